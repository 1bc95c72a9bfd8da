"""The fleet's namespace hosts over SSH: sshd in each namespace, key authentication as an
unprivileged user, then become (sudo), as an admin's inventory reaches its hypervisors
(tests/lab/sshd.py)."""

from ansible_run import host_vars


def ssh_host_vars(ssh, namespace, workdir):
    """ansible_run.host_vars() (per-host store and lock) reached through ``ssh`` (an SshFleet)."""
    hostvars = host_vars(namespace, workdir)
    hostvars.update(ssh.host_vars(namespace))
    return hostvars


def serve(stack, ssh, lab):
    """Start sshd in ``lab``'s hypervisor namespace; ``stack`` stops it before the lab goes."""
    ssh.serve(lab.hv)
    stack.callback(ssh.stop, lab.hv)
