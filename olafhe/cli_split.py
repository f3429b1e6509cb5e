"""The client/server commands of the ``olafhe`` command line (see docs/contract.md, "Client and server").

``keygen``, ``encrypt``, ``decrypt``, ``remote-infer`` and ``ray-infer`` run on the client (they read the
secret key); ``compute``, ``serve`` and ``ray-infer``'s Ray actors run on the server side (evaluation keys only).
"""

from __future__ import annotations

import argparse
import json

from olafhe.cli_common import add_common_arguments, emit, load_command_config, load_plan, log


def _plan_required(args: argparse.Namespace):  # noqa: ANN202
    return load_plan(args.plan)


def cmd_keygen(args: argparse.Namespace) -> int:
    from olafhe.serve.split import run_keygen

    result = run_keygen(load_command_config(args), _plan_required(args), args.out, args.backend, log=log)
    emit(result, args.json, f"key set {result['key_id']}: secret key in {result['secret']} (keep it), "
                             f"evaluation keys in {result['public']} ({result['public_bytes'] / 1e6:.1f} MB)")
    return 0


def cmd_encrypt(args: argparse.Namespace) -> int:
    from olafhe.serve.split import run_encrypt

    config = load_command_config(args)
    result = run_encrypt(config, _plan_required(args), args.keys, args.limit or config.run.infer_images or 1,
                         args.out, args.backend, log=log)
    emit(result, args.json, "\n".join(result["files"]))
    return 0


def cmd_compute(args: argparse.Namespace) -> int:
    from olafhe.serve.split import run_compute

    result = run_compute(load_command_config(args), _plan_required(args), args.keys, args.inputs, args.out,
                         args.backend, log=log)
    emit(result, args.json, "\n".join(result["outputs"]))
    return 0


def cmd_decrypt(args: argparse.Namespace) -> int:
    from olafhe.serve.split import run_decrypt

    result = run_decrypt(load_command_config(args), _plan_required(args), args.keys, args.inputs, args.backend)
    emit(result, args.json, "\n".join(f"{r['file']}: class {r['class']}" for r in result["outputs"]))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from olafhe.serve.service import run_serve

    run_serve(load_command_config(args), _plan_required(args), args.host, args.port, keys=args.keys,
              workdir=args.workdir, queue=args.queue, max_upload_mb=args.max_upload_mb, max_key_gb=args.max_key_gb,
              max_key_sets=args.max_key_sets, backend_name=args.backend, log=log)
    return 0


def cmd_remote_infer(args: argparse.Namespace) -> int:
    from olafhe.serve.service import run_remote_infer

    config = load_command_config(args)
    result = run_remote_infer(config, _plan_required(args), args.keys, args.url,
                              args.limit or config.run.infer_images or 1, args.backend, log=log)
    emit(result, args.json, json.dumps(result, indent=1))
    return 0


def _ray_text(result: dict) -> str:
    """Per batch and in total: classes, simulator agreement, labels correct, seconds, throughput, RSS."""
    lines = [f"batch {r['batch']}: classes {r['classes']} simulator {r['simulator']} labels {r['labels']} "
             f"({r['actor']}, {r['seconds']:.2f} s, attempts {r['attempts']})" for r in result["rows"]]
    lines.append(f"{result['images']} images in {result['batches']} batches on {result['actors']} actors "
                 f"({result['threads_per_actor']} threads each, {result['address']}): "
                 f"{result['agree_with_simulator']:.0%} agree with the simulator, {result['correct']} labels correct")
    lines.append(f"{result['wall_seconds']:.1f} s: {result['seconds_per_image']:.2f} s per image amortized, "
                 f"{result['images_per_second']:.2f} images/s; {len(result['retries'])} batches retried, "
                 f"{result['actors_lost']} actors lost")
    lines += [f"{name}: peak RSS {mb:.0f} MB" for name, mb in result["actor_peak_rss_mb"].items()]
    return "\n".join(lines)


def cmd_ray_infer(args: argparse.Namespace) -> int:
    from olafhe.core.jsonfile import save_json
    from olafhe.serve.ray_infer import run_ray_infer

    config = load_command_config(args)
    result = run_ray_infer(config, _plan_required(args), args.keys, args.limit or config.run.infer_images or 1,
                           args.actors, address=args.address, backend_name=args.backend, public=args.public,
                           progress=not args.no_progress, log=log)
    if args.json and args.json != "-":
        save_json(args.json, result)
    emit(result, args.json == "-", _ray_text(result))
    return 0


def _split_common(sp: argparse.ArgumentParser, keys_help: str | None, json_flag: bool = True) -> None:
    add_common_arguments(sp)
    sp.add_argument("--plan", required=True, help="the plan (PLAN.json) both sides run")
    sp.add_argument("--backend", help="backend (default backend.name of the config)")
    if keys_help:
        sp.add_argument("--keys", required=True, help=keys_help)
    if json_flag:
        sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_split_commands(sub: argparse._SubParsersAction) -> None:
    """keygen, encrypt, compute, decrypt, serve, remote-infer, ray-infer."""
    client_keys = "the key folder `olafhe keygen` wrote (KEYDIR: its secret/ stays with the client)"
    sp = sub.add_parser("keygen", help="client: generate keys; secret key to OUT/secret, evaluation keys to OUT/public")
    _split_common(sp, None)
    sp.add_argument("--out", required=True, help="a new folder for the key set")
    sp.set_defaults(fn=cmd_keygen)

    sp = sub.add_parser("encrypt", help="client: encrypt class-balanced test images into ciphertext files")
    _split_common(sp, client_keys)
    sp.add_argument("--limit", type=int, help="number of test images (default run.infer_images)")
    sp.add_argument("--out", required=True, help="folder for image-NNN.olct and labels.json")
    sp.set_defaults(fn=cmd_encrypt)

    sp = sub.add_parser("compute", help="server: run the plan on ciphertext files with evaluation keys only")
    _split_common(sp, "the evaluation keys (KEYDIR/public)")
    sp.add_argument("inputs", nargs="+", help="ciphertext files or folders of them")
    sp.add_argument("--out", required=True, help="folder for the output ciphertexts")
    sp.set_defaults(fn=cmd_compute)

    sp = sub.add_parser("decrypt", help="client: decrypt output ciphertexts to classes and logits")
    _split_common(sp, client_keys)
    sp.add_argument("inputs", nargs="+", help="output ciphertext files or folders of them")
    sp.set_defaults(fn=cmd_decrypt)

    sp = sub.add_parser("serve", help="server: HTTP inference server (evaluation keys only)")
    _split_common(sp, None, json_flag=False)
    sp.add_argument("--keys", help="load this public key folder (KEYDIR/public) at start")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--workdir", help="folder for uploaded key sets (default: a new temporary folder)")
    sp.add_argument("--queue", type=int, default=4, help="requests that may wait while one runs (beyond: 503)")
    sp.add_argument("--max-upload-mb", type=float, default=512, help="largest ciphertext upload (beyond: 413)")
    sp.add_argument("--max-key-gb", type=float, default=64, help="largest key set (beyond: 413)")
    sp.add_argument("--max-key-sets", type=int, default=1, help="key sets held at once")
    sp.set_defaults(fn=cmd_serve)

    sp = sub.add_parser("remote-infer", help="client: upload keys to a server, send encrypted test images, decrypt")
    _split_common(sp, client_keys)
    sp.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    sp.add_argument("--limit", type=int, help="number of test images (default run.infer_images)")
    sp.set_defaults(fn=cmd_remote_infer)

    sp = sub.add_parser("ray-infer", help="client: encrypted batch inference on a pool of Ray actors (evaluation "
                                          "keys only on the actors)")
    _split_common(sp, client_keys, json_flag=False)
    sp.add_argument("--limit", type=int, help="number of test images (default run.infer_images)")
    sp.add_argument("--actors", type=int, default=1, help="Ray actors, each loads the evaluation keys once")
    sp.add_argument("--address", help="join a running Ray cluster ('auto' or IP:PORT; default: start a local Ray)")
    sp.add_argument("--public", help="the evaluation keys the actors load (default KEYDIR/public; on a cluster a "
                                     "copy at the same path on every node)")
    sp.add_argument("--json", nargs="?", const="-", metavar="OUT",
                    help="write the JSON report to OUT (alone: print it on stdout)")
    sp.set_defaults(fn=cmd_ray_infer)
