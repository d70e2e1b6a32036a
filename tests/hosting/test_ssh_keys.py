"""ssh:// hosts without a network (hosting/ssh.py): endpoints, key lines, fingerprints as
ssh-keygen prints them, the panel's own key pair. The sshd side: tests/integration/
test_ssh_hosts.py."""

from __future__ import annotations

import shutil
import stat
import subprocess

import pytest
from django.core.exceptions import ValidationError

from hosting import ssh
from tests.hosting.factories import SSH_HOST_KEY


def test_endpoints_name_user_host_and_port():
    assert ssh.target("ssh://deploy@10.0.0.5") == ssh.Target("10.0.0.5", 22, "deploy")
    where = ssh.target("ssh://deploy@127.0.0.1:2222")
    assert where.known_hosts_name == "[127.0.0.1]:2222"
    for bad in ("ssh://10.0.0.5", "tcp://deploy@x:1", "ssh://deploy@", "ssh://d@x:99999"):
        with pytest.raises(ValidationError, match="ssh://user@host"):
            ssh.target(bad)


def test_key_lines_from_pub_files_and_known_hosts_parse_alike():
    from_pub = ssh.parse_key(SSH_HOST_KEY + " root@web1")
    from_known_hosts = ssh.parse_key("[10.0.0.5]:2222 " + SSH_HOST_KEY)
    assert ssh.key_line(from_pub) == ssh.key_line(from_known_hosts) == SSH_HOST_KEY


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_fingerprints_are_what_ssh_keygen_prints(tmp_path):
    pub = tmp_path / "key.pub"
    pub.write_text(SSH_HOST_KEY + "\n")
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert ssh.fingerprint(ssh.parse_key(SSH_HOST_KEY)) == printed


def test_the_panels_key_pair_is_made_once_and_kept_private(tmp_path, settings):
    settings.HOST_SSH_KEY_FILE = str(tmp_path / "host-ssh" / "id_ed25519")
    public = ssh.panel_public_key()
    assert public.startswith("ssh-ed25519 ") and public.endswith(" hostpanel")
    assert ssh.panel_public_key() == public  # the same pair on the next call
    mode = stat.S_IMODE((tmp_path / "host-ssh" / "id_ed25519").stat().st_mode)
    assert mode == 0o600
