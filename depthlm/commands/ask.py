"""``depthlm ask``: how far is a point in my photo? And how far apart are two points?

Examples::

    depthlm ask --model runs/sft --image kitchen.jpg --point 320,240
    depthlm ask --model runs/sft --image kitchen.jpg --point 320,240 --point 610,250 --fov 70
    depthlm ask --model runs/sft --image scan.png --point 100,80 --intrinsics 518.9,519.5,325.6,253.7
    depthlm ask --backend openai --base-url http://127.0.0.1:8000/v1 --model depthlm \\
        --render-settings runs/sft --image kitchen.jpg --point 320,240
    depthlm ask --model runs/tasks --task distance --image kitchen.jpg --point 320,240 --point 610,250
    depthlm ask --model runs/tasks --task region --image kitchen.jpg --box 100,80,300,260 --name chair
    depthlm ask --model runs/tasks --task hinted --image kitchen.jpg --known 100,400=1.5 --point 320,240
    depthlm ask --model runs/tasks --task motion --image a.jpg --second-image b.jpg

``--task`` asks one question of a task the model was trained on (depthlm.tasks; the model folder's
depthlm_render.json records them): depth, time (one --point, --speed M/S), distance, closer (two),
points (several), hinted (--known X,Y=METRES hints, then the asked --point), region (--box, --name),
motion (--second-image: a second photo by the same camera).

Points are X,Y pixels (x column, y row, from the top-left) of the photo as it is displayed
(EXIF orientation applied). Prints each point's answer and metres, the 3D distance between
every two points; ``--save PREFIX`` also writes the marked views it sent (no files otherwise).
"""

from __future__ import annotations

import argparse
import signal
import sys

from depthlm.commands.backend import (
    add_backend_arguments,
    backend_from_args,
    settings_from_args,
    stop_on_sigterm,
)
from depthlm.commands.camera import add_camera_arguments, camera_lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_backend_arguments(p)
    p.add_argument("--image", required=True, help="your photo (JPEG, PNG, WebP, ...)")
    p.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="X,Y",
        help="pixel to ask about (repeat for several points)",
    )
    add_task_arguments(p)
    add_camera_arguments(p)
    p.add_argument(
        "--save",
        metavar="PREFIX",
        help="also save the views sent, PREFIX-A.png ..., and the marked photo PREFIX-points.png "
        "(default: write no files)",
    )
    p.add_argument("question", nargs="?", help="your own question (default: the model's training question)")


def add_task_arguments(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("other questions (depthlm.tasks; the model must have been trained on them)")
    t.add_argument("--task", help="task to ask (default: depth for every --point, as before)")
    t.add_argument("--box", type=box_corners, help="region: X0,Y0,X1,Y1 pixels of the object's box")
    t.add_argument("--name", help="region: what the object is, in words (default: object)")
    t.add_argument(
        "--known", action="append", default=[], metavar="X,Y=METRES", help="hinted: a point's known distance"
    )
    t.add_argument("--speed", type=float, help="time: speed in m/s")
    t.add_argument("--second-image", help="motion: a second photo by the same camera")


def box_corners(text: str) -> list[float]:
    """--box X0,Y0,X1,Y1: four numbers, or one line saying what was given."""
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"--box needs four numbers X0,Y0,X1,Y1, got {text!r}")
    return box


def run(args: argparse.Namespace) -> int:
    from depthlm.ask import ask, check_points, load_photo, parse_point, save_images
    from depthlm.intrinsics_guess import guess_camera

    photo = load_photo(args.image)
    points = [parse_point(p) for p in args.point]
    camera = guess_camera(photo.size, photo.exif, intrinsics=args.intrinsics, fov=args.fov)
    if points:  # before loading a model: a typo costs nothing (region and motion take no --point)
        check_points(points, photo.size)
    settings = settings_from_args(args)
    if args.task:
        return _run_task(args, photo, camera, points, settings)
    if not points:
        from depthlm.errors import DepthLMError

        raise DepthLMError("give at least one --point X,Y to ask about")
    for line in camera_lines(camera):
        print(line, file=sys.stderr if line.startswith("warning") else sys.stdout)
    result = with_backend(
        args,
        settings,
        lambda backend: ask(
            backend, photo.image, camera.intrinsics, points, settings, args.question, args.max_tokens
        ),
    )
    print(f"question: {result.question}")
    for line in result.lines():
        print(line)
    if args.save:
        saved = save_images(result, photo.image, args.save)
        print("saved: " + ", ".join(str(p) for p in saved))
    return 0


def _run_task(args: argparse.Namespace, photo, camera, points, settings) -> int:
    from depthlm.ask import check_task, parse_known, task_query

    check_task(args.task, settings)
    picked = {
        "points": points,
        "known": [parse_known(k) for k in args.known],
        "box": args.box,
        "name": args.name,
        "speed": args.speed,
        "second": args.second_image,
        "image_path": args.image,
    }
    query = task_query(
        args.task, photo.image, camera.intrinsics, settings, **picked
    )  # errors before the model
    for line in camera_lines(camera):
        print(line, file=sys.stderr if line.startswith("warning") else sys.stdout)
    from depthlm import tasks
    from depthlm.ask import TaskAnswer, save_task_images

    text = with_backend(
        args, settings, lambda backend: backend.generate([query], max_tokens=args.max_tokens)[0]
    )
    answer = TaskAnswer(args.task, query, text, tasks.get(args.task).parse(text))
    print(f"question: {query.question}")
    for line in answer.lines():
        print(line)
    if args.save:
        saved = save_task_images(query, args.save)
        print("saved: " + ", ".join(str(p) for p in saved))
    return 0


def with_backend(args: argparse.Namespace, settings, work):
    """``work(backend)`` with the backend of the command line, closed however it ends (Ctrl-C and
    `kill` included: a vLLM engine runs in a child process that would outlive us)."""
    backend = backend_from_args(args, settings)
    previous = stop_on_sigterm()
    try:
        return work(backend)
    finally:
        backend.close()
        signal.signal(signal.SIGTERM, previous)
