"""Variable names that change how programs, interpreters, shells and loaders behave.

An --import turns a store's keys into variables, and whoever can write that secret is not
necessarily whoever configures the container (docs/threat-model.md: data is not configuration).
A key named BASH_ENV, LD_PRELOAD or NODE_OPTIONS would run that writer's code in the program;
PATH or HOME choose what it runs and where it reads its settings; a proxy or CA bundle chooses
where its own credentials go. shim/pipeline/imports.py refuses (65) an import that would set one of
these, unless the import names it in ?allow_names= (docs/import.md, "Names an import never
sets": tests/unit/test_controlling_names.py checks that table against these lists).
"""

from __future__ import annotations

# Whole names, compared upper-cased (keys are upper-cased on import; a lower-case prefix could
# still spell http_proxy).
EXACT = frozenset({
    # shells
    "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS", "CDPATH",
    "GLOBIGNORE", "SHELL",
    # what runs, and where programs read their own settings and temporary files
    "PATH", "HOME", "TMPDIR", "EDITOR", "VISUAL", "PAGER", "MANPAGER", "BROWSER",
    "LESSOPEN", "LESSCLOSE",
    # the C library
    "GCONV_PATH", "GLIBC_TUNABLES", "LOCPATH", "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF",
    "LOCALDOMAIN", "RES_OPTIONS", "TZDIR",
    # interpreters and runtimes
    "RUBYOPT", "RUBYLIB", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
    "PHPRC", "PHP_INI_SCAN_DIR", "TCLLIBPATH", "GEM_HOME", "GEM_PATH", "BUNDLE_GEMFILE",
    # TLS trust and where traffic goes
    "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY",
    "ALL_PROXY", "FTP_PROXY", "NO_PROXY",
})
# Families, by how the name starts.
PREFIXES = ("LD_", "DYLD_", "PYTHON", "PERL", "NODE_", "NPM_CONFIG_", "LUA_", "MALLOC_",
            "BASH_FUNC_", "GIT_", "DOTNET_", "CORECLR_", "COR_", "AWS_ENDPOINT_URL")


def controls_programs(name: str) -> bool:
    """True for a name an import must not set without the operator's say-so."""
    upper = name.upper()
    return upper in EXACT or upper.startswith(PREFIXES)
