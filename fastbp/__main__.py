"""The ``fastbp`` command line (``fastbp ...`` or ``python -m fastbp ...``).

Subcommands:
  bench   time fastbp against the NumPy reference, PyTorch and JAX
"""
import argparse
import sys

from .bench import cli as bench_cli


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastbp",
        description="fastbp: fast CPU backpropagation for MLPs, Elman RNNs, LSTMs and GRUs.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = commands.add_parser(
        "bench", help="benchmark fastbp against the NumPy reference, PyTorch and JAX",
        description="Time one training step (forward + backward, every gradient) of an MLP, an "
                    "Elman RNN, LSTMs and a GRU for fastbp, the NumPy reference and, when "
                    "installed, PyTorch and JAX, on identical inputs, after checking their "
                    "gradients agree. "
                    "The default suite takes about a minute on 2 cores.",
        epilog="Example: fastbp bench --models rnn,lstm --batch 1,16 --threads 1 --json out.json")
    bench_cli.add_arguments(bench)
    bench.set_defaults(run=bench_cli.run, subparser=bench)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 1 a row failed, 2 usage, 130 Ctrl-C)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        parser.print_help()
        return 2
    if unknown:   # complain with the subcommand's usage, which lists its options
        args.subparser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.run(args, args.subparser.error, argv=argv[1:])


if __name__ == "__main__":
    sys.exit(main())
