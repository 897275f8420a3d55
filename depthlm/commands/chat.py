"""``depthlm chat --model M --image IMG``: talk about distances in one photo, in the terminal.

Example session::

    $ depthlm chat --model runs/sft --image kitchen.jpg
    > point 320,240
    A placed at (320, 240)
    > how far is it?
    A (320, 240): 2.31 m
    > point 610,250
    > distance A B
    A (320, 240): 2.31 m ...
    A-B: 1.12 m apart

Any line that is not a command is a question about every placed point. The model answers
one point at a time (it was trained that way); distances between points are computed from
its answers and the camera intrinsics, so follow-ups re-use earlier answers.
"""

from __future__ import annotations

import argparse

from depthlm.commands.backend import (
    add_backend_arguments,
    backend_from_args,
    settings_from_args,
    stop_on_sigterm,
)
from depthlm.commands.camera import add_camera_arguments, camera_lines
from depthlm.errors import DepthLMError

HELP = """commands:
  point X,Y          place a point (x column, y row in pixels of the photo as displayed)
  points             list the placed points
  remove A           remove point A          clear      remove every point
  ask [QUESTION]     ask about every point (any other line is a question too)
  distance A B       3D distance between two points (asks the model if needed)
  fov DEG            set the horizontal field of view
  intrinsics fx,fy,cx,cy   set the intrinsics (pixels)
  camera             show the intrinsics in use
  save PREFIX        save the marked photo and the views sent (PREFIX-A.png ...)
  tasks              the questions this model was trained on (depthlm.tasks)
  task NAME ...      ask one: task distance A B | task closer A B | task points [A B ...]
                     task time A 1.4 (m/s) | task hinted A=2.0 B | task region X0,Y0,X1,Y1 [name]
                     task motion OTHER_PHOTO | task depth A
  help               this text             quit       leave (or Ctrl-D)"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_backend_arguments(p)
    p.add_argument("--image", required=True, help="your photo (JPEG, PNG, WebP, ...)")
    add_camera_arguments(p)


class Session:
    """The state of one conversation: the photo, its camera, the points, the answers so far."""

    def __init__(self, backend, settings, photo, camera, max_tokens: int | None = None, out=print):
        self.backend, self.settings, self.photo, self.camera = backend, settings, photo, camera
        self.max_tokens, self.out = max_tokens, out
        self.points: dict[str, tuple[float, float]] = {}
        self.next_index = 0
        self.cache: dict[tuple, object] = {}  # (label, point, question, intrinsics) -> PointAnswer
        self.last = None  # the last AskResult, for `save`

    # ------------------------------------------------------------------ commands

    def handle(self, line: str) -> bool:
        """Run one line; False means the user wants to leave."""
        line = line.strip()
        if not line:
            return True
        word, _, rest = line.partition(" ")
        word, rest = word.lower(), rest.strip()
        try:
            if word in ("quit", "exit", "q"):
                return False
            command = getattr(self, f"cmd_{word}", None)
            if command is not None:
                command(rest)
            else:
                self.cmd_ask(line)
        except DepthLMError as err:
            self.out(f"error: {err}")
        return True

    def cmd_help(self, _: str) -> None:
        self.out(HELP)

    def cmd_point(self, rest: str) -> None:
        from depthlm.ask import check_points, label_for, parse_point

        point = parse_point(rest)
        label = label_for(self.next_index)
        check_points([point], self.photo.size, [label])
        self.next_index += 1
        self.points[label] = point
        self.out(f"{label} placed at ({point[0]:g}, {point[1]:g})")

    def cmd_points(self, _: str) -> None:
        if not self.points:
            self.out("no points yet: point X,Y")
        for label, (x, y) in self.points.items():
            self.out(f"{label} ({x:g}, {y:g})")

    def cmd_remove(self, rest: str) -> None:
        label = rest.upper()
        if self.points.pop(label, None) is None:
            raise DepthLMError(f"no point {rest!r}; placed: {', '.join(self.points) or 'none'}")
        self.out(f"{label} removed")

    def cmd_clear(self, _: str) -> None:
        self.points.clear()
        self.next_index = 0
        self.out("all points removed")

    def cmd_camera(self, _: str) -> None:
        for line in camera_lines(self.camera):
            self.out(line)

    def cmd_fov(self, rest: str) -> None:
        from depthlm.intrinsics_guess import guess_camera

        try:
            fov = float(rest)
        except ValueError:
            raise DepthLMError(f"fov {rest!r}: expected degrees, e.g. fov 70") from None
        self.camera = guess_camera(self.photo.size, fov=fov)
        self.cmd_camera("")

    def cmd_intrinsics(self, rest: str) -> None:
        from depthlm.intrinsics_guess import guess_camera

        self.camera = guess_camera(self.photo.size, intrinsics=rest)
        self.cmd_camera("")

    def cmd_ask(self, question: str) -> None:
        result = self.ask(list(self.points), question or None)
        for line in result.lines():
            self.out(line)

    def cmd_distance(self, rest: str) -> None:
        labels = [w.upper() for w in rest.replace(",", " ").split()]
        if len(labels) != 2:
            raise DepthLMError("distance needs two point names, e.g. distance A B")
        result = self.ask(labels, None)
        for line in result.lines():
            self.out(line)

    def cmd_save(self, rest: str) -> None:
        from depthlm.ask import save_images

        if self.last is None:
            raise DepthLMError("nothing asked yet")
        paths = save_images(self.last, self.photo.image, rest or "chat")
        self.out("saved: " + ", ".join(str(p) for p in paths))

    def cmd_tasks(self, _: str) -> None:
        from depthlm.ask import offered_tasks

        self.out("this model answers: " + ", ".join(offered_tasks(self.settings)))

    def cmd_task(self, rest: str) -> None:
        """One question of a task the model was trained on, about the placed points."""
        from depthlm.ask import ask_task, check_task

        name, *words = rest.split()
        if not name:
            raise DepthLMError("task NAME ...: see help")
        check_task(name, self.settings)
        picked: dict = {}
        if name == "region":
            if not words:
                raise DepthLMError("task region X0,Y0,X1,Y1 [name]")
            picked["box"] = [float(v) for v in words[0].split(",")]
            picked["name"] = " ".join(words[1:]) or None
        elif name == "motion":
            if not words:
                raise DepthLMError("task motion OTHER_PHOTO (the same camera, moved)")
            picked["second"] = words[0]
        else:
            labels, known = [], []
            for w in words:
                label, sep, metres = w.partition("=")
                if sep:
                    known.append((self._point(label), float(metres)))
                elif name == "time" and w[0].isdigit():
                    picked["speed"] = float(w)
                else:
                    labels.append(label)
            if name == "points" and not labels:
                labels = list(self.points)
            picked["points"] = [self._point(label) for label in labels]
            if known:
                picked["known"] = known
        answer = ask_task(
            self.backend,
            name,
            self.photo.image,
            self.camera.intrinsics,
            self.settings,
            self.max_tokens,
            **picked,
        )
        self.out(f"question: {answer.query.question}")
        for line in answer.lines():
            self.out(line)

    def _point(self, label: str) -> tuple[float, float]:
        if label.upper() not in self.points:
            raise DepthLMError(f"no point {label!r}; placed: {', '.join(self.points) or 'none'}")
        return self.points[label.upper()]

    # ------------------------------------------------------------------ asking

    def ask(self, labels: list[str], question: str | None):
        """Answers for the named points, asking the model only about those not answered yet
        (same point, question and intrinsics)."""
        from dataclasses import replace

        from depthlm.ask import AskResult, ask

        if not self.points:
            raise DepthLMError("place a point first: point X,Y")
        missing = [label for label in labels if label not in self.points]
        if missing:
            raise DepthLMError(f"no point {', '.join(missing)}; placed: {', '.join(self.points)}")
        intr = self.camera.intrinsics
        keys = {label: (label, self.points[label], question, intr) for label in labels}
        todo = [label for label in labels if keys[label] not in self.cache]
        if todo:  # the one asking path (depthlm.ask.ask), for the points not answered yet
            fresh = ask(
                self.backend,
                self.photo.image,
                intr,
                [self.points[k] for k in todo],
                self.settings,
                question,
                self.max_tokens,
            )
            for label, answer in zip(todo, fresh.answers):
                answer.query.meta["label"] = label
                self.cache[keys[label]] = replace(answer, label=label)
        answers = [self.cache[keys[label]] for label in labels]
        self.last = AskResult(answers, intr, self.settings.depth_target, answers[0].query.question)
        return self.last


def run(args: argparse.Namespace) -> int:
    from depthlm.ask import load_photo
    from depthlm.intrinsics_guess import guess_camera

    photo = load_photo(args.image)
    camera = guess_camera(photo.size, photo.exif, intrinsics=args.intrinsics, fov=args.fov)
    settings = settings_from_args(args)
    print(f"photo: {photo.name} ({photo.size[0]}x{photo.size[1]} as displayed)")
    print(f"model: {args.model} (loading...)", flush=True)
    backend = backend_from_args(args, settings)
    stop_on_sigterm()
    session = Session(backend, settings, photo, camera, args.max_tokens, out=lambda s: print(s, flush=True))
    session.cmd_camera("")
    print("type `help` for commands; place a point with `point X,Y`, then ask", flush=True)
    try:
        while True:
            try:
                line = input("> ")
            except EOFError:
                print()
                break
            if not session.handle(line):
                break
    except KeyboardInterrupt:
        print()
    finally:
        backend.close()
    return 0
