"""The Bitwarden double against Bitwarden's own SDK (bitwarden-sdk, the Rust SDK's Python
binding): the real client logs in with an access token the double issued, opens the login
answer's encrypted payload with the token's key, and decrypts the secrets the double encrypted.
If the double's wire or cryptography differed from Bitwarden's (and so shim's, which the double
shares in shim/providers/bwscrypto.py), this is where it shows.

The SDK runs in a child process: its native calls hold the GIL, which would stop the double's
server threads in this one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import unavailable
from tests.doubles.bitwarden import BitwardenDouble

CLIENT = """
import json, sys
from bitwarden_sdk import BitwardenClient, DeviceType, client_settings_from_dict
endpoint, token, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
client = BitwardenClient(client_settings_from_dict({
    "apiUrl": endpoint + "/api", "identityUrl": endpoint + "/identity",
    "deviceType": DeviceType.SDK, "userAgent": "shim-tests"}))
client.auth().login_access_token(token)
one = client.secrets().get(ids[0]).data
many = client.secrets().get_by_ids(ids).data.data
print(json.dumps({"one": [one.key, one.value],
                  "many": sorted([secret.key, secret.value] for secret in many)}))
"""


@pytest.fixture
def sdk_python():
    result = subprocess.run([sys.executable, "-c", "import bitwarden_sdk"], capture_output=True)
    if result.returncode != 0:
        unavailable("bitwarden-sdk is not installed (make install-test installs it)")
    return sys.executable


def test_bitwardens_sdk_reads_what_the_double_serves(tmp_path, canaries, sdk_python):
    first, second = canaries.new("first"), canaries.new("second")
    with BitwardenDouble(tmp_path) as double:
        project = str(uuid.uuid4())
        one = double.add_secret("DB_PASSWORD", first, project=project)
        two = double.add_secret("API_KEY", second, project=project)
        result = subprocess.run(
            [sdk_python, "-c", CLIENT, double.endpoint, double.access_token(project), one, two],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "SSL_CERT_FILE": str(double.ca_path)})
        paths = [entry.path for entry in double.requests()]

    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    assert answer["one"] == ["DB_PASSWORD", first]
    assert answer["many"] == sorted([["DB_PASSWORD", first], ["API_KEY", second]])
    assert paths[0] == "/identity/connect/token" and "/api/secrets/get-by-ids" in paths


LIST_CLIENT = """
import json, sys
from bitwarden_sdk import BitwardenClient, DeviceType, client_settings_from_dict
endpoint, token, organization = sys.argv[1:4]
client = BitwardenClient(client_settings_from_dict({
    "apiUrl": endpoint + "/api", "identityUrl": endpoint + "/identity",
    "deviceType": DeviceType.SDK, "userAgent": "shim-tests"}))
client.auth().login_access_token(token)
listed = client.secrets().list(organization).data.data
print(json.dumps(sorted([str(secret.id), secret.key] for secret in listed)))
"""


def test_bitwardens_sdk_lists_the_organization_the_double_serves(tmp_path, sdk_python):
    """The organization list shim's --watch probe asks (`bws secret list`): the SDK takes the
    organization from the bearer's claim to pick the key, and decrypts every listed name."""
    with BitwardenDouble(tmp_path) as double:
        project, other = str(uuid.uuid4()), str(uuid.uuid4())
        one = double.add_secret("DB_PASSWORD", "unused", project=project)
        two = double.add_secret("API_KEY", "unused", project=project)
        double.add_secret("NOT_GRANTED", "unused", project=other)
        result = subprocess.run(
            [sdk_python, "-c", LIST_CLIENT, double.endpoint, double.access_token(project),
             double.organization],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "SSL_CERT_FILE": str(double.ca_path)})
        paths = [entry.path for entry in double.requests()]

    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == sorted([[one, "DB_PASSWORD"], [two, "API_KEY"]])
    assert f"/api/organizations/{double.organization}/secrets" in paths
