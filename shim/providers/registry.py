"""Registry of secret stores: one line per provider, imported only when used.

An image that resolves only files and placeholders never imports hvac,
boto3, the Azure SDK or google-auth, and does not need them installed.
"""

from __future__ import annotations

import importlib

from shim.tools.errors import ConfigError

# provider name -> (module, class, pip extra that installs its SDK)
REGISTRY = {
    "file": ("shim.providers.files", "FileProvider", None),
    "vault": ("shim.providers.vault.provider", "VaultProvider", "vault"),
    "awssecrets": ("shim.providers.aws.secretsmanager", "SecretsManagerProvider", "aws"),
    "awsssm": ("shim.providers.aws.ssm", "ParameterStoreProvider", "aws"),
    "azurekeyvault": ("shim.providers.azure", "KeyVaultProvider", "azure"),
    "sops": ("shim.providers.sops.provider", "SopsProvider", "sops"),
    "gcpsecrets": ("shim.providers.gcp", "SecretManagerProvider", "gcp"),
    "doppler": ("shim.providers.doppler", "DopplerProvider", "doppler"),
    "infisical": ("shim.providers.infisical", "InfisicalProvider", "infisical"),
    "onepassword": ("shim.providers.onepassword", "OnePasswordConnectProvider", "onepassword"),
    "bws": ("shim.providers.bitwarden", "SecretsManagerProvider", "bitwarden"),
}


def load_provider(name: str, context):
    """Instantiate the provider `name`, or say which extra to install."""
    module_name, class_name, extra = REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, class_name)
    except (ImportError, AttributeError) as error:
        # A missing SDK (or a provider not built yet) is a configuration
        # problem of the image, not a crash.
        missing = getattr(error, "name", None) or module_name
        remedy = f"install shim-secrets[{extra}]" if extra else "reinstall shim-secrets"
        raise ConfigError(f"provider {name} is not available: {remedy}",
                          hint=f"{missing} cannot be imported") from None
    return factory(context)
