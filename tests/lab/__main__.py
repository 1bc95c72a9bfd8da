"""Demo: build a lab, optionally run commands in the hypervisor namespace, print the battery.

    sudo PYTHONPATH=tests python -m lab --hv 'ebtables -t nat -A PREROUTING -i vnet0 -s ! 52:54:00:00:00:00 -j DROP'
"""

import argparse
import os
import shlex
import sys

from . import Lab, format_table, run_battery


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="hfwdemo%d" % os.getpid(),
                        help="namespace name prefix (default: hfwdemo<pid>)")
    parser.add_argument("--guests", type=int, default=2)
    parser.add_argument("--lan", action="store_true", help="add a routed LAN namespace")
    parser.add_argument("--hv", action="append", default=[], metavar="CMD",
                        help="command to run in the hypervisor namespace first (repeatable)")
    parser.add_argument("--timeout", type=float, default=0.3)
    args = parser.parse_args(argv)
    with Lab(args.prefix, guests=args.guests, lan=args.lan) as lab:
        for command in args.hv:
            lab.exec("hv", shlex.split(command))
        sys.stdout.write(format_table(run_battery(lab, timeout=args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
