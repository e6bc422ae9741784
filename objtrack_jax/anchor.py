"""Template anchoring: a sub-pixel photometric refinement of tracks against the query frame.

PIPs++ estimates each window from the previous window's last estimate, so any small bias of the
network accumulates over a long video (a still scene slowly slides away, docs/drift.md). This
module removes that accumulation after the network has run: every estimate ``p[n, t]`` is
re-aligned, by Gauss-Newton (inverse-compositional Lucas-Kanade with a similarity warp: shift,
scale and rotation) on a coarse-to-fine image pyramid, to a patch of the **query frame** around
the query point -- the one appearance that never drifts. The patches are compared after
removing their mean and scaling to unit norm, so a brightness change (flicker, exposure) leaves
the match unchanged.

An estimate is replaced by the aligned position only when the match is good (normalised
cross-correlation ``>= min_score``) and the correction is at most ``max_shift`` pixels. Where
the query patch does not match, the previous frame's patch is aligned instead (frame-to-frame
Lucas-Kanade, kept within ``max_shift`` of the network's estimate); otherwise the network's
estimate, moved by the point's last accepted correction, is kept (a point that is hidden, or
changed beyond a similarity, matches neither, and the network's motion is then the better guess;
its error changes slowly, so the last measured correction still applies). A point that stood
still while its query patch was found (``hold_still`` frames in a row within ``still_px``) and
whose match then collapses is **lost**: something passes over it, and the network's estimate
follows the occluder. It is held at its last found position and reported hidden (score
``LOST_SCORE``, :func:`fuse_visibility`) until its query patch is found again, searched for
around the held position as well as around the network's estimate (``hold_still`` 0: off). The
result for frame ``t`` depends on frame ``t``, the query frame, ``p[n, t]`` and a small per-point
state carried in time order away from the query frame (last correction, last scale and
rotation, previous patch, still count and lost flag): the step streams, and any chunking of the
video gives the same result.

This is not part of the PIPs++ algorithm: ``TrackingSettings.anchor`` switches it on (the
shipped weights' validated settings do; parity and the reproduction protocols run without it).
Conventions and parameters: docs/conventions.md, "Anchoring to the query frame".

This module holds the rules, one frame at a time: :func:`anchor_frame` / :func:`anchor_frames`
are pure JAX (jit- and vmap-able). They are driven over frames by the post-network stage,
:mod:`objtrack_jax.post` (one driver for ``track_queries``, the functional API and the online
tracker), which also fuses the visibility (:func:`firm_threshold`, :func:`fuse_visibility`).

Coordinates: ``(x, y)`` pixels, integer values at pixel centres (docs/conventions.md).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

LUMA = (0.299, 0.587, 0.114)
MIN_TEXTURE = 1e-4  # smallest structure-tensor eigenvalue of a normalised patch worth aligning
LOST_SCORE = -2.0  # the score of a lost point-frame: held in place and reported hidden


@dataclasses.dataclass(frozen=True)
class AnchorConfig:
    """Parameters of the refinement (the defaults are the validated ones).

    Attributes:
      radius: the patch is ``(2 radius + 1)^2`` pixels at every pyramid level.
      levels: pyramid levels (level l halves the resolution l times); the coarsest level lets a
        correction of about ``radius * 2^(levels-1) / 2`` pixels converge.
      iters: Gauss-Newton iterations per level.
      min_score: the normalised cross-correlation (in [-1, 1]) the aligned patch must reach.
      max_shift: the largest accepted correction, pixels of the input video.
      chain: where the query patch does not match, align the previous frame's patch
        (:func:`anchor_frame`).
      chain_min_score: the normalised cross-correlation a frame-to-frame match must reach.
      keep_correction: where neither patch matches (the point is hidden, turned or on a plain
        surface), move the network's estimate by the point's last accepted correction instead
        of leaving it as it is (the network's error changes slowly, so the last measured
        correction is the better guess; False: the network's estimate).
      hide_logit: a point-frame where neither patch matched is reported visible only when the
        network's visibility logit is above this (and above the visibility threshold):
        :func:`firm_threshold`, :func:`fuse_visibility`. None: visibility is the network's.
      hold_still: a point whose query patch was found in this many consecutive frames, each
        within ``still_px`` of the first of them, is still; when its query patch is then not
        found, it is lost: held at its last found position (not the network's estimate, which
        follows whatever passes over it), reported hidden, and re-found when its query patch
        matches again around the held position or the network's estimate. 0: off.
      still_px: how far (pixels of the input video) a still point may move during its
        ``hold_still`` frames; a still or lost point's query match is accepted within
        ``still_px`` of where its still run began, farther only at ``refind_score``.
      refind_score: the normalised cross-correlation a still or lost point's query match must
        reach away from where it stood (a partly covered patch, or one fitted to the occluder,
        stays below it; a point that really moved matches nearly exactly).
    """

    radius: int = 5
    levels: int = 3
    iters: int = 6
    min_score: float = 0.75
    max_shift: float = 8.0
    chain: bool = True
    chain_min_score: float = 0.8
    keep_correction: bool = True
    hide_logit: Optional[float] = 3.0
    hold_still: int = 0
    still_px: float = 1.0
    refind_score: float = 0.9

    def __post_init__(self):
        for name, lo in (("radius", 1), ("levels", 1), ("iters", 1), ("hold_still", 0)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ValueError(f"anchor {name} must be an integer >= {lo}, got {v!r}")
        for name in ("min_score", "chain_min_score", "refind_score"):
            if not -1.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"anchor {name} must be in [-1, 1], got {getattr(self, name)!r}")
        if not isinstance(self.keep_correction, (bool, np.bool_)):
            raise ValueError(f"anchor keep_correction must be a bool, got {self.keep_correction!r}")
        if self.hide_logit is not None and not np.isfinite(float(self.hide_logit)):
            raise ValueError(f"anchor hide_logit must be a finite logit or None, "
                             f"got {self.hide_logit!r}")
        if not float(self.max_shift) > 0:
            raise ValueError(f"anchor max_shift must be > 0 pixels, got {self.max_shift!r}")
        if not float(self.still_px) > 0:
            raise ValueError(f"anchor still_px must be > 0 pixels, got {self.still_px!r}")


# --------------------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------------------

def grey(frames: jax.Array) -> jax.Array:
    """``[..., H, W, 3]`` RGB -> ``[..., H, W]`` float32 luma."""
    return jnp.tensordot(jnp.asarray(frames, jnp.float32), jnp.asarray(LUMA, jnp.float32), 1)


def _down(img: jax.Array) -> jax.Array:
    """One pyramid step of ``[H, W]``: a [1 2 1]/4 blur in each direction, then every second
    pixel. Pixel centres map as ``x_l+1 = x_l / 2``."""
    k = jnp.asarray([0.25, 0.5, 0.25], jnp.float32)
    p = jnp.pad(img, 1, mode="edge")
    h = k[0] * p[:, :-2] + k[1] * p[:, 1:-1] + k[2] * p[:, 2:]
    v = k[0] * h[:-2] + k[1] * h[1:-1] + k[2] * h[2:]
    return v[::2, ::2]


def pyramid(img: jax.Array, levels: int) -> list:
    """``[img, img/2, ...]`` (``levels`` images) of one ``[H, W]`` image."""
    out = [img]
    for _ in range(levels - 1):
        out.append(_down(out[-1]))
    return out


def _sample(img: jax.Array, xy: jax.Array) -> jax.Array:
    """Bilinear samples of ``img [H, W]`` at ``xy [..., 2]`` (x, y), border values outside."""
    h, w = img.shape
    x = jnp.clip(xy[..., 0], 0.0, w - 1.0)
    y = jnp.clip(xy[..., 1], 0.0, h - 1.0)
    x0 = jnp.clip(jnp.floor(x), 0, max(w - 2, 0)).astype(jnp.int32)
    y0 = jnp.clip(jnp.floor(y), 0, max(h - 2, 0)).astype(jnp.int32)
    fx = x - x0
    fy = y - y0
    x1 = jnp.minimum(x0 + 1, w - 1)
    y1 = jnp.minimum(y0 + 1, h - 1)
    a = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    b = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return a * (1 - fy) + b * fy


def _offsets(radius: int) -> jax.Array:
    r = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    gy, gx = jnp.meshgrid(r, r, indexing="ij")
    return jnp.stack([gx, gy], -1)  # [P, P, 2] (x, y)


def _normalise(patch: jax.Array) -> jax.Array:
    """Zero mean, unit norm over the last two axes (a flat patch stays zero)."""
    p = patch - patch.mean(axis=(-2, -1), keepdims=True)
    n = jnp.sqrt((p * p).sum(axis=(-2, -1), keepdims=True))
    return p / jnp.maximum(n, 1e-6)


def templates(pyr: list, xy: jax.Array, radius: int):
    """The query patches of points ``xy [N, 2]`` in one frame's pyramid: per level ``(patch
    [N, P, P], grad [N, P, P, 2], hessian_inv [N, 2, 2], texture [N], sd [N, P, P, 4],
    hessian4_inv [N, 4, 4])`` normalised, where texture is the smaller eigenvalue of the
    normalised patch's structure tensor (0: nothing to align) and ``sd`` / ``hessian4_inv`` the
    steepest-descent images and inverse Hessian of the similarity warp (shift x, shift y, a, b:
    ``u -> [[1 + a, -b], [b, 1 + a]] u + shift``)."""
    big = _offsets(radius + 1)
    out = []
    for lev, img in enumerate(pyr):
        c = xy / (2.0 ** lev)
        p = _sample(img, c[:, None, None, :] + big[None])  # [N, P+2, P+2]
        mean = p[:, 1:-1, 1:-1].mean(axis=(-2, -1), keepdims=True)
        cen = p - mean
        norm = jnp.sqrt((cen[:, 1:-1, 1:-1] ** 2).sum(axis=(-2, -1), keepdims=True))
        cen = cen / jnp.maximum(norm, 1e-6)
        patch = cen[:, 1:-1, 1:-1]
        gx = 0.5 * (cen[:, 1:-1, 2:] - cen[:, 1:-1, :-2])
        gy = 0.5 * (cen[:, 2:, 1:-1] - cen[:, :-2, 1:-1])
        g = jnp.stack([gx, gy], -1)  # [N, P, P, 2]
        hxx = (gx * gx).sum((-2, -1))
        hxy = (gx * gy).sum((-2, -1))
        hyy = (gy * gy).sum((-2, -1))
        det = hxx * hyy - hxy * hxy
        tr = hxx + hyy
        lam_min = 0.5 * (tr - jnp.sqrt(jnp.maximum(tr * tr - 4 * det, 0.0)))
        safe = jnp.maximum(det, 1e-12)
        hinv = jnp.stack([jnp.stack([hyy, -hxy], -1), jnp.stack([-hxy, hxx], -1)], -2)
        hinv = hinv / safe[:, None, None]
        u = _offsets(radius)
        ux, uy = u[..., 0], u[..., 1]
        sd = jnp.stack([gx, gy, gx * ux + gy * uy, -gx * uy + gy * ux], -1)  # [N, P, P, 4]
        h4 = jnp.einsum("npqi,npqj->nij", sd, sd) + 1e-6 * jnp.eye(4)
        out.append((patch, g, hinv, lam_min, sd, jnp.linalg.inv(h4)))
    return out


def refine_frame_sim(pyr: list, tmpl: list, xy: jax.Array, lin: jax.Array, radius: int,
                     iters: int):
    """Aligns the query patches ``tmpl`` in one frame's pyramid with a similarity warp, starting
    at ``xy [N, 2]`` with the linear part ``lin [N, 2, 2]`` (the patch offset ``u`` is read at
    ``xy + lin @ u``, ``u`` in pixels of each level). Inverse-compositional Gauss-Newton: the
    update ``(dx, dy, a, b)`` is solved with the template's steepest-descent images and its
    inverse composed into the warp. Returns ``(xy [N, 2], lin [N, 2, 2], score [N])``: the score
    is the normalised cross-correlation at level 0, -1 when the warp's area change left
    [1/4, 4]."""
    off = _offsets(radius)
    c = xy
    for lev in range(len(pyr) - 1, -1, -1):
        img = pyr[lev]
        patch, _, _, _, sd, h4inv = tmpl[lev]
        s = 2.0 ** lev

        def body(_, state):
            c, a = state
            pos = c[:, None, None, :] / s + jnp.einsum("nij,pqj->npqi", a, off)
            cur = _normalise(_sample(img, pos))
            err = cur - patch
            b = (sd * err[..., None]).sum((1, 2))  # [N, 4]
            dp = jnp.einsum("nij,nj->ni", h4inv, b)
            one = 1.0 + dp[:, 2]
            det = one * one + dp[:, 3] * dp[:, 3]
            binv = jnp.stack([jnp.stack([one, dp[:, 3]], -1), jnp.stack([-dp[:, 3], one], -1)], -2)
            binv = binv / det[:, None, None]
            a_new = jnp.einsum("nij,njk->nik", a, binv)
            c_new = c - s * jnp.einsum("nij,nj->ni", a_new, dp[:, :2])
            return c_new, a_new

        c, lin = jax.lax.fori_loop(0, iters, body, (c, lin))
    pos = c[:, None, None, :] + jnp.einsum("nij,pqj->npqi", lin, off)
    cur = _normalise(_sample(pyr[0], pos))
    score = (cur * tmpl[0][0]).sum((1, 2))
    det = jnp.linalg.det(lin)
    score = jnp.where((det > 0.25) & (det < 4.0), score, -1.0)
    return c, lin, score


def refine_frame(pyr: list, tmpl: list, xy: jax.Array, radius: int, iters: int):
    """Aligns the ``N`` template patches ``tmpl`` (from :func:`templates`) in one frame's
    pyramid, starting at ``xy [N, 2]``. Returns ``(xy [N, 2], score [N])``: the aligned
    positions and their normalised cross-correlation with the template at level 0."""
    off = _offsets(radius)
    d = jnp.zeros_like(xy)  # correction, level-0 pixels
    for lev in range(len(pyr) - 1, -1, -1):
        img = pyr[lev]
        patch, g, hinv = tmpl[lev][:3]
        s = 2.0 ** lev

        def body(_, d):
            c = (xy + d) / s
            cur = _normalise(_sample(img, c[:, None, None, :] + off[None]))
            err = cur - patch  # [N, P, P]
            b = (g * err[..., None]).sum((1, 2))  # [N, 2]
            step = jnp.einsum("nij,nj->ni", hinv, b)
            return d - step * s

        d = jax.lax.fori_loop(0, iters, body, d)
    c = xy + d
    cur = _normalise(_sample(pyr[0], c[:, None, None, :] + off[None]))
    score = (cur * tmpl[0][0]).sum((1, 2))
    return c, score


def _accept(cfg: "AnchorConfig", new, score, start, texture):
    return ((score >= cfg.min_score) & (jnp.linalg.norm(new - start, axis=-1) <= cfg.max_shift)
            & (texture > MIN_TEXTURE) & jnp.all(jnp.isfinite(new), -1))


def firm_threshold(cfg: "AnchorConfig", vis_threshold: float) -> Optional[float]:
    """The visibility logit above which a point-frame stays visible where its patch was not
    found (None: ``cfg.hide_logit`` is off)."""
    return None if cfg.hide_logit is None else max(float(vis_threshold), float(cfg.hide_logit))


def fuse_visibility(visible, firm, accepted, hidden=None):
    """Visibility with anchoring: a point-frame is visible when the network says so and either
    its patch was found (``accepted``) or the network is sure (``firm``: logit above
    :func:`firm_threshold`). A point that matches neither its query patch nor its previous patch
    and that the network hesitates on is most often hidden (docs/conventions.md). A lost point
    (``hidden``: score :data:`LOST_SCORE`, ``AnchorConfig.hold_still``) is hidden whatever the
    network says: the network's estimate is then on the occluder, and its logit is the
    occluder's."""
    out = visible & (accepted | firm)
    return out if hidden is None else out & ~hidden


def init_carry(tmpl):
    """The per-point state :func:`anchor_frame` carries from frame to frame, at a query frame:
    ``(offset [N, 2] zeros, previous-frame templates (the query's), previous accepted [N],
    the query warp's linear part [N, 2, 2] (identity), the last found position [N, 2], the
    start of the current still run [N, 2], its length in frames [N] int32 (0), lost [N]
    (False))``."""
    n = tmpl[0][0].shape[0]
    zeros = jnp.zeros((n, 2), jnp.float32)
    return (zeros, tmpl, jnp.ones((n,), bool),
            jnp.broadcast_to(jnp.eye(2, dtype=jnp.float32), (n, 2, 2)), zeros, zeros,
            jnp.zeros((n,), jnp.int32), jnp.zeros((n,), bool))


def anchor_frame(cfg: "AnchorConfig", frame, tmpl, xy, active, carry):
    """One frame of the refinement, pure (jit- and vmap-able).

    Args:
      frame: ``[H, W, 3]`` RGB; tmpl: the points' query templates (:func:`templates`, ``N``
        rows); xy: ``[N, 2]`` the network's estimates in this frame; active: ``[N]`` bool, the
        points refined here (the others pass through, their carry unchanged); carry: from
        :func:`init_carry` or the previous frame.
    Returns:
      ``(xy [N, 2], score [N], accepted [N], carry)``: score is the match's normalised
      cross-correlation where accepted, :data:`LOST_SCORE` where the point is lost (reported
      hidden), -1 otherwise.

    The query patch is aligned (similarity warp, :func:`refine_frame_sim`, from the point's last
    accepted scale and rotation) from two starts, the network's estimate and that estimate moved
    by the point's last accepted correction (the network's drift changes slowly, so the second
    start stays within reach when the drift has grown beyond the pyramid's); the better accepted
    match wins. Where the query patch does not match (the point turned, scaled or changed
    lighting locally), the previous frame's patch at the previous output is aligned instead
    (``cfg.chain``; Lucas-Kanade from frame to frame, accepted only within ``max_shift`` of the
    network's estimate, so it cannot run away from it). Otherwise (``accepted`` False) the
    output is the network's estimate moved by the point's last accepted correction
    (``cfg.keep_correction``; the network's estimate itself when that is off or nothing was
    accepted yet). Inactive points pass through unchanged.

    With ``cfg.hold_still``, a point still for ``hold_still`` query matches in a row is lost
    where its query patch is not found within ``still_px`` of where it stood (or elsewhere at
    ``refind_score``): no frame-to-frame match (the previous patch would be the occluder's), the
    output is its last found position, the score :data:`LOST_SCORE`. A third start, that
    position, searches for the query patch until it is found again.
    """
    offset, prev, prev_ok, lin, held, ref, still, lost = carry
    hold = cfg.hold_still > 0
    pyr = pyramid(grey(frame), cfg.levels)
    texture = tmpl[0][3]
    best = xy
    best_lin = lin
    best_score = jnp.full(xy.shape[:1], -1.0, jnp.float32)
    starts = [xy, xy + offset]
    if hold:
        kept = (still >= cfg.hold_still) | lost
        starts.append(jnp.where(kept[:, None], held, xy))
    for start in starts:
        new, new_lin, score = refine_frame_sim(pyr, tmpl, start, lin, cfg.radius, cfg.iters)
        ok = _accept(cfg, new, score, start, texture) & active
        if hold:  # a still point is found where it stood, or elsewhere by a near-exact match
            ok = ok & (~kept | (jnp.linalg.norm(new - ref, axis=-1) <= cfg.still_px)
                       | (score >= cfg.refind_score))
        take = ok & (score > best_score)
        best = jnp.where(take[:, None], new, best)
        best_lin = jnp.where(take[:, None, None], new_lin, best_lin)
        best_score = jnp.where(take, score, best_score)
    anchored = best_score > -1.0
    now_lost = active & ~anchored & (still >= cfg.hold_still) if hold else None
    if cfg.chain:
        new, score = refine_frame(pyr, prev, xy + offset, cfg.radius, cfg.iters)
        ok = (prev_ok & active & ~anchored & (score >= cfg.chain_min_score)
              & (jnp.linalg.norm(new - xy, axis=-1) <= cfg.max_shift)
              & (prev[0][3] > MIN_TEXTURE) & jnp.all(jnp.isfinite(new), -1))
        if hold:
            ok = ok & ~now_lost
        best = jnp.where(ok[:, None], new, best)
        best_score = jnp.where(ok, score, best_score)
    accepted = best_score > -1.0
    if cfg.keep_correction:
        best = jnp.where((active & ~accepted)[:, None], xy + offset, best)
    if hold:
        best = jnp.where(now_lost[:, None], held, best)
        best_score = jnp.where(now_lost, LOST_SCORE, best_score)
        near = (still > 0) & (jnp.linalg.norm(best - ref, axis=-1) <= cfg.still_px)
        run = jnp.where(near, still + 1, 1)
        ref = jnp.where((anchored & ~near)[:, None], best, ref)
        still = jnp.where(anchored, run, jnp.where(now_lost | ~active, still, 0))
        held = jnp.where(anchored[:, None], best, held)
        lost = jnp.where(active, now_lost, lost)
    offset = jnp.where(accepted[:, None], best - xy, offset)
    if cfg.chain:
        here = templates(pyr, best, cfg.radius)
        keep = lambda a, b: jnp.where(active.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)  # noqa
        prev = jax.tree_util.tree_map(keep, here, prev)
        prev_ok = jnp.where(active, accepted, prev_ok)
    return best, best_score, accepted, (offset, prev, prev_ok, best_lin, held, ref, still, lost)


def anchor_frames(cfg: "AnchorConfig", frames, tmpl, xy, active, carry):
    """:func:`anchor_frame` over ``frames [F, H, W, 3]`` in order (``xy [F, N, 2]``, ``active
    [F, N]``), carrying ``carry``: the same results for any split of a video into chunks."""
    def body(c, xs):
        frame, p, act = xs
        new, score, ok, c = anchor_frame(cfg, frame, tmpl, p, act, c)
        return c, (new, score, ok)

    carry, (new, score, ok) = jax.lax.scan(body, carry, (frames, xy, active))
    return new, score, ok, carry
