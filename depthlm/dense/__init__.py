"""Dense depth maps and point clouds from a depthlm model, at a fraction of a query per pixel.

    from depthlm.dense import DenseOptions, dense_depth
    from depthlm.inference import make_backend
    from depthlm.settings import resolve_settings

    settings = resolve_settings("runs/sft")
    backend = make_backend("vllm", "runs/sft", settings)
    result, files = dense_depth(backend, "photo.jpg", out_dir="out", fov=70,
                                options=DenseOptions(grid=(32, 24), k=1))
    result.depth          # (H, W) float32 z-depth in metres, NaN where none
    files["cloud"]        # out/cloud.ply

Modules: ``sampling`` (grid / adaptive pixels), ``strategy`` (pixels -> queries: one per pixel
through depthlm.render, or K per query through the ``points`` task), ``runner`` (resumable
chunked asking, timing), ``interpolate`` (joint bilateral upsampling), ``writers`` / ``output``
(PNG mm, NPY, preview, points JSON, PLY), ``metrics`` (dense, FDE-Bench regions, flying points),
``evaluate`` (record sets with dense ground truth), ``pictures`` (side by side).
"""

from __future__ import annotations

import os

from PIL import Image

from depthlm.dense.runner import DenseOptions, DenseResult, run_dense

__all__ = ["DenseOptions", "DenseResult", "dense_depth", "depth_map_view", "run_dense"]


def dense_depth(
    backend,
    photo: str | os.PathLike | Image.Image,
    *,
    intrinsics=None,
    fov: float | None = None,
    options: DenseOptions | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    ply_stride: int = 1,
):
    """A photo (path or PIL image) -> (DenseResult, {name: path} of written files or {}).

    `intrinsics`: an Intrinsics or "fx,fy,cx,cy" text; else `fov` (horizontal degrees); else
    EXIF; else depthlm.intrinsics_guess's stated default (with a warning in the result)."""
    from depthlm.ask import load_photo
    from depthlm.dense.output import save
    from depthlm.intrinsics_guess import guess_camera

    picture = load_photo(photo)
    camera = guess_camera(picture.size, picture.exif, intrinsics=intrinsics, fov=fov)
    result = run_dense(
        backend, picture.image, camera.intrinsics, backend.settings, options, out_dir, progress=progress
    )
    result.stats["camera"] = camera.describe()
    if camera.warning:
        result.stats["camera_warning"] = camera.warning
    files = {}
    if out_dir is not None:
        info = {
            "model": str(backend.model),
            "backend": backend.describe(),
            "settings": backend.settings.to_dict(),
        }
        files = save(result, picture.image, out_dir, ply_stride=ply_stride, run_info=info)
    return result, files


def depth_map_view(
    backend, image: Image.Image, intrinsics, out_dir: str | os.PathLike, options: DenseOptions | None = None
):
    """For the app's "depth map" view: (preview image, {"png", "npy", "ply", "json": path}).
    Progress: the runner's tqdm bar, which ``gradio.Progress(track_tqdm=True)`` shows in the page."""
    from depthlm.dense.writers import preview

    result, files = dense_depth(backend, image, intrinsics=intrinsics, options=options, out_dir=out_dir)
    return preview(result.depth), {
        "png": files["depth_png"],
        "npy": files["depth_npy"],
        "ply": files["cloud"],
        "json": files["summary"],
    }
