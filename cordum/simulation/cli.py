"""`cordum simulate`: registered into the `cordum` CLI (cordum/cli.py imports this module). No Django here.

The work is done by the same pure core as the web simulation (cordum/policy/simulate.py).
"""

from cordum.cli import register_subcommand
from cordum.policy import simulate


def add_simulate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="dry-run a candidate policy over recorded calls (an evidence export, JSONL); JSON report",
        description="Replay recorded calls (the evidence export, one JSON object per line) through a candidate "
        "safety.yaml and print a JSON report: transition matrix, changed calls by rule and agent/team, dead "
        "and top rules, approval load per day. Exit 0; 1 when --fail-if-newly-denied-over is exceeded; "
        "2 on invalid input (policy errors are printed as file:line:col: message).",
    )
    simulate.add_arguments(parser)
    parser.set_defaults(func=simulate.run)


register_subcommand("simulate", add_simulate_parser)
