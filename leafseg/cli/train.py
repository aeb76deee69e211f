"""The ``leafseg train`` command: its options and ``main(argv)``; the work is done by :mod:`leafseg.training.train`."""
from __future__ import annotations

import logging
import os
import sys

from leafseg.training.train import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, SetupError,
                                    TrainInterrupted, _one_line, build_parser, describe_error, logger, run)

__all__ = ["build_parser", "main"]


def main(argv=None, callbacks=None):
    """The command: run(), with errors reported on one line of stderr and an exit status.

    Bad input (status 2) and a NaN or Inf loss (status 1) return the status. After any other
    error inside training, and after Ctrl-C, the process ends here (``os._exit``, once the message
    and the logs are flushed): tearing down a tf.data iterator whose pipeline failed can deadlock
    in TensorFlow (a map-and-batch runner waits for a parallel-map result that is never
    computed), at once or at interpreter exit, so the failed pipeline is never torn down. Every
    file of the run is complete by then: they are written atomically, TensorBoard flushed per epoch.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("leafseg", "mrcnn"):
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        result = run(argv, callbacks)
        if result.summary:
            print(result.summary, flush=True)
        return EXIT_OK
    except SetupError as err:
        print(f"leafseg train: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as err:
        print(f"leafseg train: {err}" if isinstance(err, TrainInterrupted) else "leafseg train: interrupted",
              file=sys.stderr)
        _end_process(EXIT_INTERRUPTED)
    except Exception as err:  # what stopped training: one line for the user, a traceback unless expected
        from mrcnn.callbacks import NonFiniteLossError  # (imported here: --help needs no TensorFlow)

        if isinstance(err, NonFiniteLossError):  # fit ended normally: nothing is left half-running
            print(f"leafseg train: error: {_one_line(err)}", file=sys.stderr)
            return EXIT_FAILED
        logger.exception("training failed")
        print(f"leafseg train: error: {describe_error(err)}", file=sys.stderr)
        _end_process(EXIT_FAILED)


def _end_process(status):
    """Flush what the user should see and end the process without tearing anything down."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
