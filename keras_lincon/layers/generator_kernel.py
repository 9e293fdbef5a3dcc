"""The generator stage in ``keras.ops``: features -> points of the generator rows' set.

``y = sum_blocks softmax(h W_v + c_v) V + nonneg(h W_r + c_r) R + (h W_l + c_l) L``
(Frerix et al., CVPR-W 2020), with the weight shapes of
:class:`keras_lincon.planning.layout.GeneratorLayout`.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_lincon.layers.backend_ops import matmul
from keras_lincon.planning.layout import GeneratorLayout
from keras_lincon.planning.options import NONNEG_CHOICES

#: The ray coefficients' non-negative maps, by name (:data:`keras_lincon.planning.options.NONNEG_CHOICES`).
NONNEG_FUNCTIONS = dict(zip(NONNEG_CHOICES, (ops.abs, ops.softplus, ops.relu, ops.square), strict=True))


def affine(x, kernel, bias):
    return matmul(x, ops.cast(kernel, x.dtype)) + ops.cast(bias, x.dtype)


def generator_outputs(x, w, layout: GeneratorLayout, mode: str, nonneg: str):
    """``sum softmax(.) V + nonneg(.) R + (.) L + offset``: (..., n) points of ``P_gen``.

    Args:
        x: (..., k) features (already in the compute dtype).
        w: the layer holding the weights as attributes (``kernel``, ``bias``,
            ``generators`` or ``complement_basis``/``ray_coordinates``/
            ``small_kernel``/``small_bias``, ``offset``, ``vertex_*``).
        layout: the generator layout; mode: ``"direct"`` or ``"projected"``.
        nonneg: key of :data:`NONNEG_FUNCTIONS` for the ray coefficients.
    """
    n_lin, n_rays = layout.n_lineality, layout.n_rays
    n_logits = layout.n_vertex_blocks * layout.block_size
    coeffs = affine(x, w.kernel, w.bias)
    if mode == "direct":  # one matmul gives lineality, ray and vertex coefficients
        gen_end = n_lin + n_rays
        out, logits = None, coeffs[..., gen_end : gen_end + n_logits]
        if gen_end:
            gen_coeffs = coeffs if not n_logits else coeffs[..., :gen_end]
            if n_rays and not n_lin:
                gen_coeffs = NONNEG_FUNCTIONS[nonneg](gen_coeffs)
            elif n_rays:  # nonneg on the ray coefficients only
                gen_coeffs = ops.where(np.arange(gen_end) >= n_lin, NONNEG_FUNCTIONS[nonneg](gen_coeffs), gen_coeffs)
            if layout.generator_path == "diagonal":  # generator j = scale_j e_j
                out = gen_coeffs * ops.cast(w.generator_scale, x.dtype)
            elif layout.generator_path == "gather":  # generator j = scale_j e_column_j: O(n), no product
                scaled = gen_coeffs * ops.cast(w.generator_scale, x.dtype)
                padded = ops.concatenate([scaled, ops.zeros_like(scaled[..., :1])], axis=-1)
                out = ops.take(padded, w.generator_gather, axis=-1)
            else:
                out = matmul(gen_coeffs, ops.cast(w.generators, x.dtype))
    else:  # z + (nonneg(s) (R Q^T) - z Q^T) Q for a full map z
        out = coeffs
        small = affine(x, w.small_kernel, w.small_bias) if n_rays + n_logits else out[..., :0]
        if layout.n_basis:
            basis = ops.cast(w.complement_basis, x.dtype)
            coords = -matmul(out, ops.transpose(basis))
            if n_rays:
                rays = NONNEG_FUNCTIONS[nonneg](small[..., :n_rays])
                coords = coords + matmul(rays, ops.cast(w.ray_coordinates, x.dtype))
            out = out + matmul(coords, basis)
        logits = small[..., n_rays:] if n_logits else None
    if layout.vertex_path != "none":
        vertex_part = _vertex_part(logits, w, layout, ops.shape(x)[:-1])
        out = vertex_part if out is None else out + vertex_part
    if layout.has_offset:
        out = out + ops.cast(w.offset, x.dtype)
    return out


def _vertex_part(logits, w, layout: GeneratorLayout, batch_shape):
    """Softmax per block over its vertices (padding slots hold real vertices)."""
    nb, smax, dtype = layout.n_vertex_blocks, layout.block_size, logits.dtype
    weights = ops.softmax(ops.reshape(logits, (-1, nb, smax)) + ops.cast(w.vertex_mask, dtype), axis=-1)
    if layout.vertex_path == "gather":
        local = ops.einsum("bjs,jsw->bjw", weights, ops.cast(w.vertex_local, dtype))
        flat = ops.pad(ops.reshape(local, (-1, nb * layout.block_width)), [[0, 0], [0, 1]])  # the zero slot
        vertex_part = ops.take(flat, w.vertex_gather, axis=1)
    else:
        vertex_part = matmul(ops.reshape(weights, (-1, nb * smax)), ops.cast(w.vertex_dense, dtype))
    return ops.reshape(vertex_part, batch_shape + (w.units,))
