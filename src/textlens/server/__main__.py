"""``python -m textlens.server MODEL [--host H] [--port P] ...``: serve a model."""

from __future__ import annotations

import argparse
import sys

from ..cli import positive_int
from ..errors import TextlensError
from . import serve


def main(argv: list[str] | None = None, prog: str = "python -m textlens.server") -> int:
    from ..model import OUTPUT_FUNCTIONS

    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("model", help="model folder, 'demo' or 'demo-alerts'")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--method", "-m", action="append", dest="methods", help="offered method (repeatable)"
    )
    parser.add_argument("--steps", type=int, help="integrated_gradients steps on this server")
    parser.add_argument("--api-key", help="required X-API-Key header (default $TEXTLENS_API_KEY)")
    parser.add_argument("--no-batching", dest="batching", action="store_false")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--max-texts", type=int, default=32)
    parser.add_argument("--max-chars", type=int, default=4000)
    parser.add_argument("--time-budget", type=float, default=10.0)
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument(
        "--output-function",
        choices=OUTPUT_FUNCTIONS,
        help="softmax, sigmoid or none (default: from the model's config)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the model folder's own code (.py files named by auto_map); read them first",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    methods = server_methods(args.methods, args.steps)
    try:
        serve(
            args.model,
            host=args.host,
            port=args.port,
            methods=methods,
            api_key=args.api_key,
            device=args.device,
            output_function=args.output_function,
            trust_remote_code=args.trust_remote_code,
            log_level=args.log_level,
            batching=args.batching,
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
            max_texts=args.max_texts,
            max_chars=args.max_chars,
            time_budget_s=args.time_budget,
        )
    except TextlensError as exc:
        print(f"textlens: error: {exc}", file=sys.stderr)
        return 2
    return 0


def server_methods(names: list[str] | None, steps: int | None) -> dict[str, dict[str, int]] | None:
    """The ``methods`` argument of :func:`serve` from CLI options."""
    if names is None and steps is None:
        return None
    from ..explainers import REGISTRY

    chosen = list(dict.fromkeys(names or REGISTRY))
    return {
        name: ({"n_steps": steps} if steps and name == "integrated_gradients" else {})
        for name in chosen
    }


if __name__ == "__main__":
    sys.exit(main())
