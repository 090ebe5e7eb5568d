"""Bundle adjustment of head poses, a person's 3D landmark shape and one focal length.

The camera model (OpenGL / NeRF convention, as RAD-NeRF's tracker): a head
point ``X`` (metres, head frame) is at ``R X + t`` in the camera, which looks
down -z with y up, and lands on pixel ``(cx + f Xc / -Zc, cy - f Yc / -Zc)``.

Each frame is parametrised by a rotation vector ``omega`` (``R = exp(omega)``),
the image position ``(u, v)`` of the head origin and ``sigma = log s``, where
``s = f / depth`` is pixels per metre at the origin's depth. Then, with
``P = R X`` and ``w = 1 / f``::

    x = cx + (s P_x + u - cx) / (1 - s w P_z)
    y = cy + (-s P_y + v - cy) / (1 - s w P_z)

so the focal only enters through the small perspective term ``s w P_z``: a
wrong focal cannot be traded against depth, and as ``f -> inf`` the model
tends to weak perspective. Translation is ``t = ((u - cx) / s, -(v - cy) / s, -f / s)``.

The solver is Levenberg-Marquardt with iteratively reweighted Huber weights
(frozen after a few iterations, so the rest converges like Gauss-Newton).
Its normal equations are split into the frames' block-banded part (six
parameters a frame, coupled to the neighbours by the smoothness term) and a
dense global part (shape, log focal) that is solved by Schur complement, so
one iteration costs O(N). The shape's similarity transform, which trades
exactly against the poses, is pinned to the generic shape's; its deformation
is free under a weak pull toward the generic shape and its mirror image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from radnerf.geometry import camera_to_world, rotation_matrix, rotation_vector, skew
from radnerf.preprocess import face_shape

log = logging.getLogger(__name__)

FACE_RADIUS = 0.08
"""Metres: converts rotations and scale changes of the head into pixels (``s * FACE_RADIUS`` px per radian)."""

_P = 6  # parameters per frame: omega (3), u, v, log s
_END_TAPER = 6  # frames over which the smoothing weight ramps up at each end of the clip
_FREEZE_AFTER = 6  # iterations of reweighting before the robust weights are frozen


@dataclass
class SolverSettings:
    """Numbers of one bundle adjustment (filled from ``TrackConfig``)."""

    point_weights: np.ndarray
    """``[68]`` weight of each landmark in the data term."""
    focal_prior: float
    """Centre of the focal prior, pixels."""
    focal_prior_sigma: float
    """Standard deviation of the focal prior in log space."""
    fixed_focal: float | None = None
    """Focal held fixed (pixels), or None to estimate it."""
    fixed_shape: bool = False
    """Hold the starting shape fixed (poses only)."""
    fixed_shape_depth: bool = False
    """Hold the starting shape's depth (z) fixed, fitting only its x, y (a clip that shows one view)."""
    shape_reg: float = 1.0
    """Pull of each point toward the generic shape."""
    symmetry_reg: float = 1.0
    """Pull of the shape toward left-right symmetry."""
    smooth_rotation: float = 1.0
    """Weight of rotation second differences."""
    smooth_translation: float = 1.0
    """Weight of position / scale second differences."""
    smooth_huber_deg: float = 0.3
    """Rotation second difference (degrees per frame squared) above which smoothing relaxes."""
    smooth_huber_px: float = 2.0
    """Position second difference (pixels per frame squared) above which smoothing relaxes."""
    huber_px: float = 2.0
    """Huber threshold of the landmark residuals, pixels."""
    iterations: int = 30
    """Maximum Levenberg-Marquardt iterations."""
    tol: float = 1e-7
    """Stop when the relative cost decrease falls below this."""


@dataclass
class FitState:
    """Parameters of a fit. N frames, K = 68 points."""

    rvec: np.ndarray
    """``[N, 3]`` rotation vectors, head to camera."""
    uv: np.ndarray
    """``[N, 2]`` image position of the head origin, pixels."""
    logs: np.ndarray
    """``[N]`` log of pixels per metre at the origin's depth."""
    shape: np.ndarray
    """``[K, 3]`` the person's landmark shape, metres, head frame."""
    log_focal: float
    """log of the focal length in pixels."""

    def copy(self) -> FitState:
        return FitState(self.rvec.copy(), self.uv.copy(), self.logs.copy(), self.shape.copy(), float(self.log_focal))

    @property
    def focal(self) -> float:
        return float(np.exp(self.log_focal))


@dataclass
class FitResult:
    """A finished bundle adjustment."""

    state: FitState
    cost: float
    """Final robust cost."""
    iterations: int
    """LM iterations run."""
    residuals: np.ndarray
    """``[N, K, 2]`` projected minus observed landmarks, pixels (valid frames; NaN elsewhere)."""
    focal_sigma_log: float
    """Posterior standard deviation of log focal (prior included); 0 when fixed."""
    focal_sigma_log_data: float
    """Standard deviation of log focal from the landmarks alone (inf when they do not constrain it)."""
    history: list = field(default_factory=list)
    """Cost per accepted iteration."""


@dataclass
class Tracking:
    """A clip's finished track (:func:`radnerf.preprocess.tracking.track_landmarks`). N frames."""

    R: np.ndarray
    """``[N, 3, 3]`` head-to-camera rotations (OpenGL camera)."""
    t: np.ndarray
    """``[N, 3]`` head-to-camera translations, metres."""
    focal: float
    """Focal length, pixels."""
    cx: float
    cy: float
    width: int
    height: int
    shape: np.ndarray
    """``[68, 3]`` the person's landmark shape, head frame, metres."""
    used: np.ndarray
    """``[N]`` bool, frames whose landmarks the fit used (others are filled from neighbours)."""
    flagged: list
    """Frames with a pose jump no head makes (left out of the transforms)."""
    projected: np.ndarray
    """``[N, 68, 2]`` projection of the shape, pixels."""
    report: dict = field(default_factory=dict)
    """Statistics written to ``track/report.json``."""

    def c2w(self) -> np.ndarray:
        """``[N, 4, 4]`` camera-to-world (head frame) matrices, NeRF convention."""
        return camera_to_world(self.R, self.t)


# --------------------------------------------------------------------------- rotations


def left_jacobian(rvec: np.ndarray) -> np.ndarray:
    """``[N, 3] -> [N, 3, 3]``: ``exp(omega + d) ~ exp(J_l d) exp(omega)``."""
    theta = np.linalg.norm(rvec, axis=-1)[..., None, None]
    W = skew(rvec)
    small = theta < 1e-6
    t = np.where(small, 1.0, theta)
    a = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(t)) / t**2)
    b = np.where(small, 1.0 / 6.0 - theta**2 / 120.0, (t - np.sin(t)) / t**3)
    return np.eye(3) + a * W + b * (W @ W)


# --------------------------------------------------------------------------- projection


def project(state: FitState, cx: float, cy: float, jacobians: bool = False):
    """Project the shape into every frame.

    Returns:
        ``xy [N, K, 2]``; with ``jacobians``, also ``(J_frame [N, K, 2, 6],
        J_shape [N, K, 2, 3], J_focal [N, K, 2])`` of ``xy`` with respect to
        ``(omega, u, v, log s)``, the point ``X_k`` and ``log f``.
    """
    R = rotation_matrix(state.rvec)  # [N,3,3]
    P = np.einsum("nij,kj->nki", R, state.shape)  # [N,K,3]
    s = np.exp(state.logs)[:, None]  # [N,1]
    w = np.exp(-state.log_focal)
    a = s * P[..., 0] + (state.uv[:, 0:1] - cx)
    b = -s * P[..., 1] + (state.uv[:, 1:2] - cy)
    d = 1.0 - s * w * P[..., 2]
    inv_d = 1.0 / d
    xy = np.stack([cx + a * inv_d, cy + b * inv_d], -1)
    if not jacobians:
        return xy
    N, K = P.shape[:2]
    swd2 = s * w * inv_d**2  # [N,K]
    # d xy / d P  [N,K,2,3]
    dP = np.zeros((N, K, 2, 3))
    dP[..., 0, 0] = s * inv_d
    dP[..., 0, 2] = a * swd2
    dP[..., 1, 1] = -s * inv_d
    dP[..., 1, 2] = b * swd2
    # d P / d omega = -[P]x J_l(omega)
    dP_domega = -np.einsum("nkij,njl->nkil", skew(P), left_jacobian(state.rvec))
    Jf = np.zeros((N, K, 2, _P))
    Jf[..., 0:3] = dP @ dP_domega
    Jf[..., 0, 3] = inv_d
    Jf[..., 1, 4] = inv_d
    Jf[..., 0, 5] = s * P[..., 0] * inv_d + a * swd2 * P[..., 2]
    Jf[..., 1, 5] = -s * P[..., 1] * inv_d + b * swd2 * P[..., 2]
    Js = dP @ R[:, None]  # [N,K,2,3]
    Jl = np.stack([-a * swd2 * P[..., 2], -b * swd2 * P[..., 2]], -1)
    return xy, Jf, Js, Jl


def camera_from_head(state: FitState, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """``(R [N, 3, 3], t [N, 3])`` with camera point ``R X + t`` (OpenGL camera, metres)."""
    s = np.exp(state.logs)
    f = state.focal
    t = np.stack([(state.uv[:, 0] - cx) / s, -(state.uv[:, 1] - cy) / s, -f / s], -1)
    return rotation_matrix(state.rvec), t


# --------------------------------------------------------------------------- initialisation


def initial_state(
    lms: np.ndarray, valid: np.ndarray, shape: np.ndarray, weights: np.ndarray, focal: float
) -> FitState:
    """Per-frame poses from a weak-perspective fit of ``shape`` to the landmarks.

    One weighted least-squares affine camera per frame (the design matrix is
    the same for all frames, so it is a single solve), projected to the
    nearest scaled rotation; frames without landmarks take interpolated poses.

    Args:
        lms: ``[N, K, 2]`` landmarks, pixels.
        valid: ``[N]`` bool, frames whose landmarks are usable.
        shape: ``[K, 3]`` starting shape.
        weights: ``[K]`` point weights.
        focal: starting focal, pixels.
    """
    N = lms.shape[0]
    Xh = np.concatenate([shape, np.ones((shape.shape[0], 1))], 1)  # [K,4]
    Wx = Xh * weights[:, None]
    coef = np.linalg.solve(Xh.T @ Wx, Wx.T @ lms[valid].transpose(1, 0, 2).reshape(shape.shape[0], -1))
    coef = coef.reshape(4, -1, 2).transpose(1, 2, 0)  # [Nv, 2(x,y), 4]
    M = np.stack([coef[:, 0, :3], -coef[:, 1, :3]], 1)  # rows s*r1, s*r2 (image y points down)
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    rows = U @ Vt  # [Nv,2,3] orthonormal rows
    r3 = np.cross(rows[:, 0], rows[:, 1])
    R = np.concatenate([rows, r3[:, None]], 1)
    rv = rotation_vector(R)
    logs = np.log(S.mean(1))
    uv = coef[:, :, 3]
    idx = np.flatnonzero(valid)
    all_idx = np.arange(N)

    def fill(x):
        return np.stack([np.interp(all_idx, idx, x[:, j]) for j in range(x.shape[1])], 1)

    return FitState(
        rvec=fill(rv),
        uv=fill(uv),
        logs=fill(logs[:, None])[:, 0],
        shape=shape.copy(),
        log_focal=float(np.log(focal)),
    )


# --------------------------------------------------------------------------- the solver


def _mirror_operator() -> np.ndarray:
    """``[3K, 3K]`` matrix of ``X_k - M X_mirror(k)`` (M flips x)."""
    K = len(face_shape.MIRROR)
    S = np.eye(3 * K)
    flip = np.diag([-1.0, 1.0, 1.0])
    for k, m in enumerate(face_shape.MIRROR):
        S[3 * k : 3 * k + 3, 3 * m : 3 * m + 3] -= flip
    return S


class _Problem:
    """Residuals and normal equations of one bundle adjustment."""

    def __init__(self, lms, valid, cx, cy, ref_shape, st: SolverSettings, s_ref: float, breaks=()):
        self.lms, self.valid, self.cx, self.cy = lms, valid, cx, cy
        self.ref_shape = ref_shape
        self.st = st
        self.N, self.K = lms.shape[:2]
        self.nv = int(valid.sum())
        # Priors scale with the number of frames, so their balance with the data
        # term does not depend on the clip's length.
        self.shape_w = st.shape_reg**2 * self.nv * s_ref**2
        self.sym_w = st.symmetry_reg**2 * self.nv * s_ref**2
        self.S_sym = _mirror_operator()
        self.SS = self.S_sym.T @ self.S_sym
        # The shape's similarity transform (where it sits, how it is turned, its
        # size) trades exactly against the poses; left to the weak shape prior it
        # is a flat valley that Gauss-Newton overshoots, so it is pinned hard.
        G = _similarity_basis(ref_shape)
        self.GG = self.nv * s_ref**2 * (G @ G.T)
        px_per_rad = s_ref * FACE_RADIUS
        scale = np.array([px_per_rad] * 3 + [1.0, 1.0, px_per_rad]) * np.array(
            [st.smooth_rotation] * 3 + [st.smooth_translation] * 3
        )
        # No smoothing across a break (a cut): residual j spans frames j, j+1, j+2.
        mask = np.ones(max(self.N - 2, 0))
        for b in breaks:
            mask[max(b - 2, 0) : max(b, 0)] = 0.0
        # A free end is pulled by the smoothing from one side only (a spline's boundary bias):
        # taper the weight over the first and last few frames.
        ramp = np.linspace(0.2, 1.0, _END_TAPER)
        n_ramp = min(_END_TAPER, len(mask) // 2)
        mask[:n_ramp] *= ramp[:n_ramp]
        mask[len(mask) - n_ramp :] *= ramp[:n_ramp][::-1]
        self.smooth_scale = scale[None, :] * mask[:, None]  # [N-2, 6]
        # Huber thresholds in the units of the scaled residuals.
        self.smooth_delta = (
            max(st.smooth_rotation * px_per_rad * np.radians(st.smooth_huber_deg), 1e-9),
            max(st.smooth_translation * st.smooth_huber_px, 1e-9),
        )
        self.lf0 = float(np.log(st.focal_prior))
        self.fixed = st.fixed_focal is not None
        self.smooth_w: np.ndarray | None = None  # frozen Huber weights of the smoothness residuals
        self.data_w: np.ndarray | None = None  # frozen Huber weights of the landmarks

    def data_weights(self, e: np.ndarray) -> np.ndarray:
        """``[N, K]`` point weight times Huber (IRLS) weight of each landmark error ``e``; frozen ones once set."""
        if self.data_w is not None:
            return self.data_w
        hub = np.where(e > self.st.huber_px, self.st.huber_px / np.maximum(e, 1e-12), 1.0)
        return self.st.point_weights[None] * hub * self.valid[:, None]

    def smooth_weights(self, q: np.ndarray) -> np.ndarray:
        """``[N-2, 6]`` Huber (IRLS) weights of the smoothness residuals; frozen ones once set."""
        if self.smooth_w is not None:
            return self.smooth_w
        w = np.empty_like(q)
        for sl, delta in zip((slice(0, 3), slice(3, 6)), self.smooth_delta):
            n = np.linalg.norm(q[:, sl], axis=1)
            w[:, sl] = np.where(n > delta, delta / np.maximum(n, 1e-12), 1.0)[:, None]
        return w

    def freeze_weights(self, state: FitState) -> None:
        """Fix the robust weights at ``state``'s: the rest of the solve is plain weighted least squares.

        Reweighting every iteration converges only linearly; once the weights
        have settled on which landmarks are outliers and which frames move
        fast, freezing them lets Gauss-Newton converge in a few steps.
        """
        self.smooth_w = self.data_w = None
        self.smooth_w = self.smooth_weights(self.smooth_residual(state))
        self.data_w = self.data_weights(self.data_terms(state, jac=False)[1])

    # -- costs
    def data_terms(self, state: FitState, jac: bool):
        out = project(state, self.cx, self.cy, jacobians=jac)
        xy = out[0] if jac else out
        r = xy - self.lms  # [N,K,2]
        e = np.linalg.norm(r, axis=-1)
        e[~self.valid] = 0.0
        r[~self.valid] = 0.0
        return (r, e) + (tuple(out[1:]) if jac else ())

    def smooth_residual(self, state: FitState) -> np.ndarray:
        p = np.concatenate([state.rvec, state.uv, state.logs[:, None]], 1)  # [N,6]
        if self.N < 3:
            return np.zeros((0, _P))
        return (p[:-2] - 2 * p[1:-1] + p[2:]) * self.smooth_scale  # [N-2,6]

    def cost(self, state: FitState) -> float:
        _, e = self.data_terms(state, jac=False)
        if self.data_w is not None:
            c = float((self.data_w * e**2).sum())
        else:
            c = float((self.st.point_weights[None] * _huber(e, self.st.huber_px))[self.valid].sum())
        q = self.smooth_residual(state)
        if self.smooth_w is not None:
            c += float((self.smooth_w * q**2).sum())
        else:
            c += float(_huber(np.linalg.norm(q[:, :3], axis=1), self.smooth_delta[0]).sum())
            c += float(_huber(np.linalg.norm(q[:, 3:], axis=1), self.smooth_delta[1]).sum())
        dX = (state.shape - self.ref_shape).ravel()
        c += self.shape_w * float(dX @ dX)
        sx = self.S_sym @ state.shape.ravel()
        c += self.sym_w * float(sx @ sx)
        c += float(dX @ self.GG @ dX)
        if not self.fixed:
            c += ((state.log_focal - self.lf0) / self.st.focal_prior_sigma) ** 2
        return c

    # -- normal equations
    def normal_equations(self, state: FitState):
        """``(A_band [13, 6N], B [6N, G], C [G, G], g_f [6N], g_g [G])``, G = 3K + 1."""
        N, K = self.N, self.K
        r, e, Jf, Js, Jl = self.data_terms(state, jac=True)
        c = self.data_weights(e)  # [N,K]
        # Batched matmuls over flattened (point, coordinate) rows: much faster than einsum here.
        cJf = Jf * c[..., None, None]
        cJs = Js * c[..., None, None]
        Jf2 = Jf.reshape(N, 2 * K, _P)
        cJf2 = cJf.reshape(N, 2 * K, _P)
        H_ff = cJf2.transpose(0, 2, 1) @ Jf2
        g_f = (cJf2 * r.reshape(N, 2 * K, 1)).sum(1)
        G = 3 * K + 1
        if self.st.fixed_shape and self.fixed:  # poses only: the banded frame system is all there is
            A = _band_from_blocks(H_ff)
            g_f = g_f.ravel()
            self._add_smoothness(state, A, g_f)
            return A, None, np.eye(G), g_f, np.zeros(G)
        H_fl = (cJf2 * Jl.reshape(N, 2 * K, 1)).sum(1)
        H_fs = cJf[..., 0, :, None] * Js[..., 0, None, :] + cJf[..., 1, :, None] * Js[..., 1, None, :]  # [N,K,6,3]
        Js_k = Js.transpose(1, 0, 2, 3).reshape(K, 2 * N, 3)
        cJs_k = cJs.transpose(1, 0, 2, 3).reshape(K, 2 * N, 3)
        H_ss = cJs_k.transpose(0, 2, 1) @ Js_k
        g_s = (cJs * r[..., None]).sum((0, 2))
        H_sl = (cJs * Jl[..., None]).sum((0, 2))
        cJl = Jl * c[..., None]
        H_ll = float((cJl * Jl).sum())
        g_l = float((cJl * r).sum())
        if self.fixed:
            H_fl[:] = 0.0
            H_sl[:] = 0.0
            H_ll, g_l = 1.0, 0.0

        C = np.zeros((G, G))
        C[: 3 * K, : 3 * K] = _block_diag(H_ss)
        C[: 3 * K, -1] = C[-1, : 3 * K] = H_sl.ravel()
        C[-1, -1] = H_ll
        g_g = np.concatenate([g_s.ravel(), [g_l]])
        # Shape priors.
        x = state.shape.ravel()
        dx = x - self.ref_shape.ravel()
        C[: 3 * K, : 3 * K] += self.shape_w * np.eye(3 * K) + self.sym_w * self.SS + self.GG
        g_g[: 3 * K] += self.shape_w * dx + self.sym_w * (self.SS @ x) + self.GG @ dx
        if not self.fixed:
            inv_var = 1.0 / self.st.focal_prior_sigma**2
            C[-1, -1] += inv_var
            g_g[-1] += inv_var * (state.log_focal - self.lf0)

        B = np.concatenate(
            [H_fs.transpose(0, 2, 1, 3).reshape(N * _P, 3 * K), H_fl.reshape(N * _P, 1)], 1
        )
        held = np.arange(3 * K) if self.st.fixed_shape else (np.arange(2, 3 * K, 3) if self.st.fixed_shape_depth else None)
        if held is not None:  # no step along the held coordinates: the subproblem in the others
            B[:, held] = 0.0
            C[held, :] = 0.0
            C[:, held] = 0.0
            C[held, held] = 1.0
            g_g[held] = 0.0
        A = _band_from_blocks(H_ff)
        g_f = g_f.ravel()
        self._add_smoothness(state, A, g_f)
        return A, B, C, g_f, g_g

    def _add_smoothness(self, state: FitState, A: np.ndarray, g_f: np.ndarray) -> None:
        N = self.N
        if N < 3:
            return
        q = self.smooth_residual(state)  # [N-2,6] already scaled
        w = self.smooth_weights(q)
        d2 = self.smooth_scale**2 * w  # [N-2,6] curvature weight per residual
        grad = self.smooth_scale * w * q  # [N-2,6]
        U = 2 * _P
        coeffs = (1.0, -2.0, 1.0)
        frames = np.arange(N - 2)
        g = g_f.reshape(N, _P)
        for a, ca in enumerate(coeffs):
            g[frames + a] += ca * grad
            for b in range(a, 3):
                cols = (frames + b)[:, None] * _P + np.arange(_P)
                A[U - (b - a) * _P, cols] += ca * coeffs[b] * d2


def _similarity_basis(shape: np.ndarray) -> np.ndarray:
    """``[3K, 7]`` orthonormal basis of the shape's infinitesimal translations, rotations and scaling."""
    K = shape.shape[0]
    cols = [np.tile(np.eye(3)[i], K) for i in range(3)]
    centred = shape - shape.mean(0)
    cols += [np.cross(np.eye(3)[i], centred).ravel() for i in range(3)]
    cols.append(centred.ravel())
    q, _ = np.linalg.qr(np.stack(cols, 1))
    return q


def _huber(e: np.ndarray, delta: float) -> np.ndarray:
    """Huber cost scaled to equal ``e**2`` below ``delta``."""
    return np.where(e <= delta, e**2, 2 * delta * e - delta**2)


def _block_diag(blocks: np.ndarray) -> np.ndarray:
    """``[K, 3, 3] -> [3K, 3K]``."""
    K = blocks.shape[0]
    out = np.zeros((3 * K, 3 * K))
    for k in range(K):
        out[3 * k : 3 * k + 3, 3 * k : 3 * k + 3] = blocks[k]
    return out


def _band_from_blocks(H: np.ndarray) -> np.ndarray:
    """``[N, 6, 6]`` diagonal blocks -> upper banded storage ``[2*6+1, 6N]`` (bandwidth 12)."""
    N = H.shape[0]
    U = 2 * _P
    A = np.zeros((U + 1, N * _P))
    base = np.arange(N) * _P
    for r in range(_P):
        for c in range(r, _P):
            A[U + r - c, base + c] = H[:, r, c]
    return A


def _solve(A, B, C, g_f, g_g, lam: float):
    """Damped Gauss-Newton step ``(d_frames [6N], d_global [G])`` by Schur complement on the frames.

    With ``B`` None (shape and focal held) only the banded frame system is solved.
    """
    from scipy.linalg import cho_solve_banded, cholesky_banded

    U = A.shape[0] - 1
    Ad = A.copy()
    Ad[U] = A[U] * (1.0 + lam) + 1e-9
    if B is None:
        L = cholesky_banded(Ad, lower=False)
        return -cho_solve_banded((L, False), g_f), np.zeros_like(g_g)
    Cd = C + np.diag(np.diag(C) * lam + 1e-12)
    L = cholesky_banded(Ad, lower=False)
    rhs = np.concatenate([B, g_f[:, None]], 1)
    X = cho_solve_banded((L, False), rhs)
    AiB, Aig = X[:, :-1], X[:, -1]
    S = Cd - B.T @ AiB
    d_g = np.linalg.solve(S, -(g_g - B.T @ Aig))
    d_f = -Aig - AiB @ d_g
    return d_f, d_g


def _step(state: FitState, d_f: np.ndarray, d_g: np.ndarray, fixed: bool) -> FitState:
    N = state.rvec.shape[0]
    d = d_f.reshape(N, _P)
    new = state.copy()
    new.rvec = state.rvec + d[:, :3]
    new.uv = state.uv + d[:, 3:5]
    new.logs = state.logs + d[:, 5]
    new.shape = state.shape + d_g[:-1].reshape(-1, 3)
    if not fixed:
        new.log_focal = state.log_focal + float(d_g[-1])
    return new


def bundle_adjust(
    lms: np.ndarray,
    valid: np.ndarray,
    cx: float,
    cy: float,
    settings: SolverSettings,
    ref_shape: np.ndarray | None = None,
    init: FitState | None = None,
    breaks: tuple[int, ...] = (),
) -> FitResult:
    """Fit poses, shape and focal to 68-point landmarks of all frames jointly.

    Args:
        lms: ``[N, 68, 2]`` landmarks, pixels (values of invalid frames are ignored).
        valid: ``[N]`` bool, frames whose landmarks are used.
        cx, cy: principal point, pixels.
        settings: weights and limits.
        ref_shape: ``[68, 3]`` generic shape the person's shape is pulled toward
            (default :data:`face_shape.MEAN_SHAPE`).
        init: starting state (default :func:`initial_state`).
        breaks: frames that start a new shot: no smoothing between them and the frame before.
    """
    valid = np.asarray(valid, bool)
    lms = np.where(valid[:, None, None], lms, 0.0)
    ref = face_shape.MEAN_SHAPE if ref_shape is None else ref_shape
    f0 = settings.fixed_focal if settings.fixed_focal is not None else settings.focal_prior
    state = init.copy() if init is not None else initial_state(lms, valid, ref, settings.point_weights, f0)
    if settings.fixed_focal is not None:
        state.log_focal = float(np.log(settings.fixed_focal))
    s_ref = float(np.exp(np.median(state.logs[valid])))
    prob = _Problem(lms, valid, cx, cy, ref, settings, s_ref, breaks)
    cost = prob.cost(state)
    history = [cost]
    lam = 1e-4
    it = 0
    for it in range(1, settings.iterations + 1):
        if it == _FREEZE_AFTER + 1:
            prob.freeze_weights(state)
            cost = prob.cost(state)
        A, B, C, g_f, g_g = prob.normal_equations(state)
        improved = False
        for _ in range(10):
            try:
                d_f, d_g = _solve(A, B, C, g_f, g_g, lam)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            cand = _step(state, d_f, d_g, prob.fixed)
            new_cost = prob.cost(cand)
            if np.isfinite(new_cost) and new_cost < cost:
                improved = True
                break
            lam *= 10
        if not improved:
            break
        rel = (cost - new_cost) / max(cost, 1e-12)
        state, cost = cand, new_cost
        history.append(cost)
        lam = max(lam / 10, 1e-7)
        if rel < settings.tol:
            break

    # Report the robust cost itself (not the frozen-weight one), so fits can be compared.
    prob.smooth_w = prob.data_w = None
    cost = prob.cost(state)
    r, _ = prob.data_terms(state, jac=False)
    res = r.copy()
    res[~valid] = np.nan
    sig_post, sig_data = _focal_uncertainty(prob, state)
    return FitResult(
        state=state,
        cost=cost,
        iterations=it,
        residuals=res,
        focal_sigma_log=sig_post,
        focal_sigma_log_data=sig_data,
        history=history,
    )


def _focal_uncertainty(prob: _Problem, state: FitState) -> tuple[float, float]:
    """Standard deviations of log focal: posterior, and from the landmarks alone.

    From the curvature of the cost at the optimum: the Schur complement of the
    Gauss-Newton matrix onto log f, scaled by the residuals' variance.
    """
    if prob.fixed:
        return 0.0, 0.0
    A, B, C, _, _ = prob.normal_equations(state)
    from scipy.linalg import cho_solve_banded, cholesky_banded

    L = cholesky_banded(A + np.pad(np.full((1, A.shape[1]), 1e-9), ((A.shape[0] - 1, 0), (0, 0))), lower=False)
    S = C - B.T @ cho_solve_banded((L, False), B)
    # Eliminate the shape, keep log f.
    S_ss, S_sl, S_ll = S[:-1, :-1], S[:-1, -1], S[-1, -1]
    info = S_ll - S_sl @ np.linalg.solve(S_ss, S_sl)
    prior_info = 1.0 / prob.st.focal_prior_sigma**2
    data_info = info - prior_info
    _, e = prob.data_terms(state, jac=False)
    used = (prob.st.point_weights[None] > 0) & prob.valid[:, None]
    dof = max(2 * int(used.sum()) - _P * prob.nv - 3 * prob.K, 1)
    # Residual variance in weighted px^2: the data term's curvature is in units of it.
    sigma2 = max(float((prob.st.point_weights[None] * _huber(e, prob.st.huber_px))[prob.valid].sum()) / dof, 1e-6)
    if data_info <= 1e-12:
        return float(prob.st.focal_prior_sigma), float("inf")
    post = float(1.0 / np.sqrt(data_info / sigma2 + prior_info))
    return post, float(np.sqrt(sigma2 / data_info))


def focal_profile(
    lms: np.ndarray,
    valid: np.ndarray,
    cx: float,
    cy: float,
    settings: SolverSettings,
    start: FitState,
    factors: tuple[float, ...] = (0.5, 1.0, 2.0),
    max_frames: int = 250,
    iterations: int = 12,
) -> list[dict]:
    """Cost of the best fit with the focal held at ``factor x`` the estimate, for each factor.

    The direct measure of how well a clip pins the focal: on ordinary
    talking-head clips fits at half and twice the focal explain the landmarks
    almost as well (a cost a few percent higher), however sharp the curvature
    at the optimum looks. Runs on at most ``max_frames`` frames (evenly
    strided) to stay cheap.

    Returns:
        ``[{"focal_px", "cost", "relative_cost", "rigid_median_px"}]`` with
        ``relative_cost`` the cost over the cost at factor 1 (so 1.0 there).
    """
    idx = np.flatnonzero(valid)
    stride = max(1, int(np.ceil(len(idx) / max_frames)))
    keep = idx[::stride]
    sub = FitState(start.rvec[keep], start.uv[keep], start.logs[keep], start.shape, start.log_focal)
    rows = []
    for k in factors:
        f = float(np.exp(start.log_focal) * k)
        # No smoothing: strided frames are not neighbours.
        st = SolverSettings(**{
            **settings.__dict__, "fixed_focal": f, "iterations": iterations, "fixed_shape": False,
            "smooth_rotation": 0.0, "smooth_translation": 0.0,
        })
        init = sub.copy()
        init.log_focal = float(np.log(f))
        res = bundle_adjust(lms[keep], np.ones(len(keep), bool), cx, cy, st, ref_shape=start.shape, init=init)
        rigid = np.linalg.norm(res.residuals[:, list(face_shape.RIGID)], axis=-1)
        rows.append({"focal_px": round(f, 2), "cost": float(res.cost), "rigid_median_px": round(float(np.median(rigid)), 4)})
    ref = next((r["cost"] for r, k in zip(rows, factors) if k == 1.0), min(r["cost"] for r in rows))
    for r in rows:
        r["relative_cost"] = round(r["cost"] / ref, 5)
        r["cost"] = round(r["cost"], 3)
    return rows
