"""`denas-operator`: run the DeNASJob operator (kopf) with metrics, liveness and peering."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import random
import socket
import sys

EPILOG = """\
examples:
  denas-operator --all-namespaces --peering denas-operator        # HA: several replicas, one acts
  denas-operator -n team-a -n team-b --standalone --metrics-port 9090
RBAC: see operator/denas_operator/RBAC.md (or the Helm chart) for the verbs the operator needs.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="denas-operator",
        description="Kubernetes operator for DeNASJobs (denasjobs.denas.io): runs the search pods, "
        "then the training pods, and reports progress in the job's status and in Prometheus.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable; glob patterns like 'team-*' work)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (cluster-wide)"
    )
    p.add_argument(
        "--metrics-port", type=int, default=8080, help="Prometheus /metrics port (0 disables; default 8080)"
    )
    p.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        metavar="URL",
        help="liveness endpoint (kopf's; answers while the event loop is not stuck) for the "
        "kubelet's probe ('' disables; default %(default)s)",
    )
    p.add_argument(
        "--readiness",
        default="http://0.0.0.0:8082/readyz",
        metavar="URL",
        help="readiness endpoint: 200 once every job that existed at start-up was reconciled (or "
        "while a paused HA standby), 503 with the reason before ('' disables; default %(default)s)",
    )
    peer = p.add_mutually_exclusive_group()
    peer.add_argument(
        "--peering",
        metavar="NAME",
        help="kopf peering object shared by the replicas; only the highest-priority one acts "
        "(needs the kopf peering CRDs, shipped by the Helm chart)",
    )
    peer.add_argument("--standalone", action="store_true", help="no peering: the only replica (default)")
    p.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority of this replica (default: 0 standalone; with --peering a random "
        "distinct one, because kopf pauses every replica when live peers share a priority)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def peering_priority(args: argparse.Namespace) -> int:
    """The explicit --priority, else a random one with --peering: the replicas of a Deployment all
    get the same args, and kopf pauses every peer when the highest priority is shared."""
    if args.priority is not None:
        return args.priority
    if args.peering:
        return random.SystemRandom().randint(1, 2**31 - 1)
    return 0


def own_identity() -> str:
    """This replica's name in the peering object (kopf's convention: the pod name from POD_ID);
    the operator reads its peers' records with it (peering.py)."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    return (
        f"{getpass.getuser()}@{socket.gethostname()}/{os.getpid()}/{random.SystemRandom().randint(0, 2**31)}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.namespace and not args.all_namespaces:
        print("denas-operator: pass --namespace/-n NS (repeatable) or --all-namespaces", file=sys.stderr)
        return 2
    import kopf

    from . import campaign_handlers, handlers  # noqa: F401 - importing registers the kopf handlers

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("kubernetes").setLevel(logging.WARNING)
        logging.getLogger("aiohttp").setLevel(logging.WARNING)
        logging.getLogger("kopf.objects").setLevel(
            logging.WARNING
        )  # one INFO line per handler call otherwise
    handlers.RUNTIME.metrics_port = args.metrics_port or None
    handlers.RUNTIME.readiness_url = args.readiness or None
    handlers.RUNTIME.namespaces = None if args.all_namespaces else list(args.namespace)
    priority = peering_priority(args)
    identity = own_identity()
    if args.peering:
        handlers.RUNTIME.peering = (args.peering, identity, priority)
    kopf.run(
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
        peering_name=args.peering,
        standalone=not args.peering,
        priority=priority,
        identity=identity,
        ready_flag=handlers.RUNTIME.readiness.started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
