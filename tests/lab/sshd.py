"""sshd in a lab namespace, so Ansible reaches a namespace "host" the way an admin's inventory
reaches a hypervisor: SSH with key authentication as an unprivileged user, then ``become`` (sudo).

Each server runs inside its namespace through tests/lab/sshd-sandbox, in its own mount namespace:
/run is an empty tmpfs there and the login user ``hfwadmin`` exists only in private copies of
/etc/passwd, /etc/group, /etc/shadow and /etc/sudoers bound over the real ones.  Keys and
known_hosts are generated into a temporary directory; the machine's sshd, its host keys and
~/.ssh are never read or changed.  The controller connects through ``ip netns exec NS busybox nc
127.0.0.1 22`` as its ProxyCommand (the namespaces have no route to the machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

LAB_DIR = os.path.dirname(os.path.abspath(__file__))
SANDBOX = os.path.join(LAB_DIR, "sshd-sandbox")
USER, UID = "hfwadmin", 4242
TOOLS = {"sshd": "openssh-server", "ssh-keygen": "openssh-client", "sudo": "sudo", "busybox": "busybox-static"}
SSHD_CONFIG = """\
# a lab namespace's sshd (tests/lab/sshd.py)
ListenAddress 127.0.0.1:22
HostKey {dir}/host_ed25519
PidFile none
AuthorizedKeysFile {dir}/authorized_keys
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin no
Subsystem sftp internal-sftp
"""


class SshLabError(RuntimeError):
    """sshd did not come up; the message carries its log."""


def missing_tools():
    return sorted({pkg for cmd, pkg in TOOLS.items() if not shutil.which(cmd) and not os.path.exists("/usr/sbin/" + cmd)})


def _keygen(path, comment):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], check=True)


class SshFleet:
    """One client key and one sshd per namespace; close() stops every server it started."""

    def __init__(self):
        missing = missing_tools()
        if missing:
            raise SshLabError("SSH hosts need: apt-get install %s" % " ".join(missing))
        self.dir = tempfile.mkdtemp(prefix="hfw-ssh-")
        os.chmod(self.dir, 0o755)  # the login user reads its home below it
        self.key = os.path.join(self.dir, "id_ed25519")
        _keygen(self.key, "hfw-fleet-controller")
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        open(self.known_hosts, "w").close()
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)
        os.chown(self.home, UID, UID)
        self._write_accounts()
        self.servers = {}

    def _write_accounts(self):
        lines = {
            "passwd": "%s:x:%d:%d:hypervisor.firewall lab admin:%s:/bin/sh\n" % (USER, UID, UID, self.home),
            "group": "%s:x:%d:\n" % (USER, UID),
            "shadow": "%s:*:19000:0:99999:7:::\n" % USER,
        }
        for name, line in lines.items():
            with open("/etc/" + name, encoding="utf-8") as handle:
                text = handle.read()
            with open(os.path.join(self.dir, name), "w", encoding="utf-8") as handle:
                handle.write(text if text.endswith("\n") else text + "\n")
                handle.write(line)
        sudoers = os.path.join(self.dir, "sudoers")
        with open(sudoers, "w", encoding="utf-8") as handle:
            # Debian's defaults, and the admin may run anything as root without a password
            handle.write('Defaults env_reset\nDefaults secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:'
                         '/sbin:/bin"\nroot ALL=(ALL:ALL) ALL\n%s ALL=(ALL:ALL) NOPASSWD: ALL\n' % USER)
        os.chmod(sudoers, 0o440)
        os.chmod(os.path.join(self.dir, "shadow"), 0o640)

    def serve(self, ns, timeout=30):
        """Start sshd in namespace ``ns``; returns its inventory variables."""
        sdir = os.path.join(self.dir, ns)
        os.makedirs(sdir)
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        _keygen(os.path.join(sdir, "host_ed25519"), ns)
        shutil.copy(self.key + ".pub", os.path.join(sdir, "authorized_keys"))
        with open(os.path.join(sdir, "sshd_config"), "w", encoding="utf-8") as handle:
            handle.write(SSHD_CONFIG.format(dir=sdir, user=USER))
        with open(os.path.join(sdir, "host_ed25519.pub"), encoding="ascii") as handle:
            kind, blob = handle.read().split()[:2]
        with open(self.known_hosts, "a", encoding="ascii") as handle:
            handle.write("%s %s %s\n" % (ns, kind, blob))
        log = open(os.path.join(sdir, "sshd.log"), "w", encoding="utf-8")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "--",
                                 SANDBOX, self.dir, sdir], stdout=log, stderr=log)
        log.close()
        self.servers[ns] = proc
        hostvars = self.host_vars(ns)
        deadline = time.monotonic() + timeout
        while self._ssh(ns, ["true"]).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(sdir, "sshd.log"), encoding="utf-8") as handle:
                    raise SshLabError("sshd in %s did not answer: %s" % (ns, handle.read()[-2000:]))
            time.sleep(0.2)
        return hostvars

    def ssh_options(self, ns):
        return ["-F", "/dev/null", "-o", "IdentitiesOnly=yes", "-i", self.key,
                "-o", "UserKnownHostsFile=%s" % self.known_hosts, "-o", "StrictHostKeyChecking=yes",
                "-o", "HostKeyAlias=%s" % ns, "-o", "ProxyCommand=ip netns exec %s busybox nc 127.0.0.1 22" % ns]

    def _ssh(self, ns, argv):
        return subprocess.run(["ssh"] + self.ssh_options(ns) + ["-o", "BatchMode=yes", "-l", USER, ns] + argv,
                              capture_output=True, text=True, check=False)

    def host_vars(self, ns):
        """Inventory variables of namespace host ``ns``: SSH as USER with the key, become root."""
        quoted = " ".join("'%s'" % opt if " " in opt else opt for opt in self.ssh_options(ns))
        return {
            "ansible_connection": "ssh",
            "ansible_host": ns,
            "ansible_user": USER,
            "ansible_ssh_common_args": quoted,
            "ansible_ssh_private_key_file": self.key,
            "ansible_become": True,
            "ansible_become_method": "sudo",
            "ansible_python_interpreter": sys.executable,
            "ansible_remote_tmp": os.path.join(self.home, ".ansible", "tmp"),
            "ansible_control_path_dir": os.path.join(self.dir, "cp"),
        }

    def stop(self, ns):
        """Stop the sshd of namespace ``ns``."""
        proc = self.servers.pop(ns)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self):
        for ns in list(self.servers):
            self.stop(ns)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
