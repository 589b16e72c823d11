"""Window geometry: the one owner of where each token of a feature map goes.

The network pads its input to a window multiple, then cuts its ``(B, Hp, Wp, C)`` feature maps into windows
three ways: regular windows, windows shifted by half a window (Swin's cyclic shift, which links neighbouring
windows of the previous block), and windows enlarged by an overlap band (the keys and values of
cross-attention). :class:`WindowGeometry` describes all of them as *token positions*, the ``(row, col)`` of
the pixel each window slot holds, and derives everything else from them:

* cutting windows is one gather with those positions (a shift is folded into them, so no ``roll`` copies the
  map first), merging them back one gather with the inverse positions;
* the shifted-window mask compares region labels of the same positions. Only the windows of the last row and
  column of a shifted map hold pixels from opposite borders; the shifted partition puts those *border windows*
  last, so attention runs the others without a mask and the mask covers ``nH + nW - 1`` windows, not all
  ``nH * nW`` (on a 256x256 tile 8 MB instead of 64 MB, a fifth of the forward pass's peak memory);
* :mod:`srformer.explain` asks for the positions to place attention weights on the image.

Everything is written with tensor operations on the sizes and no Python branch on them. Eagerly the sizes
are ints; under the TorchScript tracer and the ONNX exporter they are traced values, so the very same code
becomes a graph that stays valid for every input size (``srformer.export`` patches nothing). Eagerly the
positions and the mask depend on the size only, so they are computed once per size and cached; traced, they
are recomputed inside the graph.

Windows are laid out window-major, ``(nW, B, N, C)``, see :mod:`srformer.models.attention` for why.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: A size as the network sees it: an int eagerly, a 0-d tensor while traced for export.
Size = int | Tensor

#: Bytes of window indices and shift masks kept for map sizes other than the current one (least recently used
#: dropped first). The current size's are always kept: about 5 MB for a 256x256 map (indices are 8 bytes per
#: token and window slot), so a tiled image's few tile shapes all stay cached.
CACHE_BYTES = 64 * 2**20


def border_index(size: Size, padded: Size, reflect: Size, device: torch.device) -> Tensor:
    """Source index of each of ``padded`` positions along an axis of ``size`` pixels padded at its end.

    ``reflect`` is 1 for reflection (``size - 2, size - 3, ...``, valid while the pad is smaller than
    ``size``) and 0 for replicating the last pixel; arithmetic instead of a branch, so it can be traced.
    """
    positions = torch.arange(padded, device=device)
    last = size - 1
    reflected = last - (positions - last).abs()
    replicated = positions.clamp(max=last)
    return replicated + reflect * (reflected - replicated)


def reflect_index(index: Tensor, size: Size) -> Tensor:
    """Fold indices in ``[-size + 1, 2 * size - 1)`` back into ``[0, size)`` by reflection at both ends."""
    last = size - 1
    return last - (last - index.abs()).abs()


class WindowGeometry:
    """Padding, window positions and the shifted-window mask for windows of ``window`` pixels.

    Args:
        window: window side in pixels. Shifted windows are shifted by :attr:`shift` = ``window // 2``.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.shift = window // 2
        self._cache: dict[tuple, dict[str, Tensor]] = {}  # per (height, width, device), least recent first

    def __repr__(self) -> str:
        return f"WindowGeometry(window={self.window}, shift={self.shift})"

    # ------------------------------------------------------------------------------------------------ padding

    def padded_size(self, height: Size, width: Size) -> tuple[Size, Size]:
        """``(height, width)`` rounded up to window multiples."""
        return height + (-height) % self.window, width + (-width) % self.window

    def pad(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, C, Hp, Wp)``, padded on the bottom and right to window multiples.

        By reflection when both pads are smaller than the image sides, else (inputs smaller than the pad) by
        replicating the last row and column, on both axes; the same rule eagerly and in an exported graph.
        """
        height, width = x.shape[-2:]
        padded_h, padded_w = self.padded_size(height, width)
        # 1 or 0: (bool * bool * 1) is an int eagerly and an integer tensor when traced.
        reflect = (padded_h - height < height) * (padded_w - width < width) * 1
        rows = border_index(height, padded_h, reflect, x.device)
        cols = border_index(width, padded_w, reflect, x.device)
        return x.index_select(-2, rows).index_select(-1, cols)

    # ---------------------------------------------------------------------------------------- token positions

    def _axis_positions(self, size: Size, span: int, offset: int, device: torch.device) -> Tensor:
        """``(size // window, span)``: along one axis, window ``k`` holds pixels ``k * window + offset + j``."""
        starts = torch.arange(0, size, self.window, device=device)
        return starts[:, None] + torch.arange(span, device=device)[None, :] + offset

    def token_positions(
        self,
        height: Size,
        width: Size,
        shifted: bool = False,
        overlap: int = 0,
        reflect: bool = True,
        device: torch.device | None = None,
    ) -> Tensor:
        """Which pixel of a ``(height, width)`` map each window slot holds.

        Args:
            height, width: a padded size (window multiples).
            shifted: windows shifted by :attr:`shift` (they wrap around the bottom and right borders).
            overlap: enlarge each (unshifted) window by this many pixels on every side.
            reflect: fold the band of enlarged windows back into the map by reflection at the borders, as the
                network does; False gives the unclipped positions (some outside the map).
        Returns:
            long ``(nW, M, 2)`` of ``(row, col)``, windows in raster order (shifted: border windows last, see
            :meth:`_shifted_order`), slots row-major; ``M = (window + 2 * overlap) ** 2``.
        """
        if shifted and overlap:
            raise ValueError("enlarged windows are never shifted")
        rows, cols = self._axis_grid(height, width, shifted, overlap, reflect, device)
        span = rows.shape[1]
        rows = rows[:, None, :, None].expand(-1, cols.shape[0], -1, span)
        cols = cols[None, :, None, :].expand(rows.shape[0], -1, span, -1)
        positions = torch.stack([rows, cols], dim=-1).reshape(-1, span * span, 2)
        return positions.index_select(0, self._shifted_order(height, width, device)) if shifted else positions

    def _axis_grid(
        self, height: Size, width: Size, shifted: bool, overlap: int, reflect: bool, device: torch.device | None
    ) -> tuple[Tensor, Tensor]:
        """Per-axis positions ``(nH, span)`` and ``(nWc, span)`` of :meth:`token_positions`."""
        span = self.window + 2 * overlap
        offset = self.shift if shifted else -overlap
        rows = self._axis_positions(height, span, offset, device)
        cols = self._axis_positions(width, span, offset, device)
        if shifted:  # the cyclic shift wraps around the borders
            rows, cols = rows % height, cols % width
        elif overlap and reflect:
            rows, cols = reflect_index(rows, height), reflect_index(cols, width)
        return rows, cols

    def _gather_index(self, batch: Size, height: Size, width: Size, shifted: bool, overlap: int, device) -> Tensor:
        """Flat index into ``(B * H * W)`` tokens of every slot of the window-major ``(nW, B, M)`` layout."""
        rows, cols = self._axis_grid(height, width, shifted, overlap, True, device)
        within_image = (rows[:, None, :, None] * width + cols[None, :, None, :]).reshape(-1, 1, rows.shape[1] ** 2)
        if shifted:
            within_image = within_image.index_select(0, self._shifted_order(height, width, device))
        image_start = torch.arange(batch, device=device)[None, :, None] * (height * width)
        return (within_image + image_start).reshape(-1)

    def _merge_index(self, batch: Size, height: Size, width: Size, shifted: bool, device) -> Tensor:
        """Flat index into the window-major ``(nW, B, N)`` slots of every pixel of ``(B, H, W)``: the inverse
        of :meth:`_gather_index` for unenlarged windows."""
        window, shift = self.window, self.shift if shifted else 0
        rows = (torch.arange(height, device=device) - shift) % height  # where each pixel sits after the shift
        cols = (torch.arange(width, device=device) - shift) % width
        window_row, window_col = rows // window, cols // window
        if shifted:  # where each raster window went in the shifted order (the inverse of _shifted_order)
            window_index = self._shifted_slot(window_row[:, None], window_col[None, :], height, width)
        else:
            window_index = window_row[:, None] * (width // window) + window_col[None, :]
        slot = (rows % window)[:, None] * window + (cols % window)[None, :]
        image = torch.arange(batch, device=device)[:, None, None]
        return ((window_index[None] * batch + image) * window**2 + slot[None]).reshape(-1)

    def _shifted_order(self, height: Size, width: Size, device) -> Tensor:
        """Raster indices of the shifted windows in the order the shifted partition holds them ``(nW,)``: the
        interior windows (one region each) in raster order, then the border windows (:meth:`border_windows`):
        the last column above the last row, then the last row."""
        n_rows, n_cols = height // self.window, width // self.window
        row, col = torch.arange(n_rows, device=device), torch.arange(n_cols, device=device)
        interior = (row[:-1, None] * n_cols + col[None, :-1]).reshape(-1)
        return torch.cat([interior, self._border_order(height, width, device)])

    def _border_order(self, height: Size, width: Size, device) -> Tensor:
        """Raster indices of the border windows ``(nB,)``, in their order at the end of :meth:`_shifted_order`."""
        n_rows, n_cols = height // self.window, width // self.window
        row, col = torch.arange(n_rows, device=device), torch.arange(n_cols, device=device)
        last_column = row[:-1] * n_cols + (n_cols - 1)
        last_row = (n_rows - 1) * n_cols + col
        return torch.cat([last_column, last_row])

    def _shifted_slot(self, row: Tensor, col: Tensor, height: Size, width: Size) -> Tensor:
        """Where the shifted window at (window) ``row``, ``col`` sits in :meth:`_shifted_order` (broadcasting)."""
        n_rows, n_cols = height // self.window, width // self.window
        interior_count = (n_rows - 1) * (n_cols - 1)
        is_last_row, is_last_col = row == n_rows - 1, col == n_cols - 1
        interior_slot = row * (n_cols - 1) + col
        border_slot = interior_count + row + is_last_row.long() * col  # last column by row, then the last row
        is_border = (is_last_row | is_last_col).long()
        return interior_slot + is_border * (border_slot - interior_slot)

    def border_windows(self, height: Size, width: Size) -> Size:
        """How many windows of the shifted partition of a ``(height, width)`` map need :meth:`shift_mask`: the
        last ones, ``nH + nW - 1``, those of the last window row and column."""
        return height // self.window + width // self.window - 1

    # -------------------------------------------------------------------------------------- window operations

    def partition(self, x: Tensor, shifted: bool = False) -> Tensor:
        """Cut ``(B, H, W, C)`` (window multiples) into windows: ``(nW, B, window**2, C)``, one gather."""
        B, H, W, C = x.shape
        index = self._cached(
            f"partition {shifted} {B}", H, W, x.device, lambda: self._gather_index(B, H, W, shifted, 0, x.device)
        )
        return x.reshape(-1, C).index_select(0, index).view(-1, B, self.window**2, C)

    def merge(self, windows: Tensor, height: Size, width: Size, shifted: bool = False) -> Tensor:
        """Inverse of :meth:`partition`: ``(nW, B, window**2, C)`` -> ``(B, height, width, C)``, one gather."""
        _, B, _, C = windows.shape
        index = self._cached(
            f"merge {shifted} {B}",
            height,
            width,
            windows.device,
            lambda: self._merge_index(B, height, width, shifted, windows.device),
        )
        return windows.reshape(-1, C).index_select(0, index).view(B, height, width, C)

    def enlarged_partition(self, x: Tensor, overlap: int) -> Tensor:
        """Cut ``(B, H, W, C)`` into windows enlarged by ``overlap`` pixels on every side.

        Window ``i`` here and window ``i`` of :meth:`partition` share a centre, so a query window attends to
        its own pixels and a band of ``overlap`` pixels of its neighbours. At the map's border the band is
        filled by reflection (the padding's rule), so no key needs masking. Needs ``overlap < min(H, W)``.

        Returns:
            ``(nW, B, (window + 2 * overlap) ** 2, C)``, one gather.
        """
        B, H, W, C = x.shape
        index = self._cached(
            f"enlarged {overlap} {B}", H, W, x.device, lambda: self._gather_index(B, H, W, False, overlap, x.device)
        )
        return x.reshape(-1, C).index_select(0, index).view(-1, B, (self.window + 2 * overlap) ** 2, C)

    def shift_mask(self, height: Size, width: Size, device: torch.device) -> Tensor:
        """Which token pairs of the shifted windows may attend to each other.

        After the cyclic shift the windows on the last row and column hold pixels from opposite borders; each
        token may only attend to tokens of its own region, as in Swin Transformer. A slot's region follows from
        where it sits in the shifted map (its unshifted window position): before the last window, in the last
        window before the wrapped band, or in the band of :attr:`shift` pixels that wrapped around.

        Only the border windows (the last row and column of windows) hold more than one region; the shifted
        partition puts them last, so the mask covers those :meth:`border_windows` only and every other window
        is attended without one.

        Returns:
            float ``(nB, 1, N, N)`` for the last ``nB = nH + nW - 1`` shifted windows: 0 where attention is
            allowed, -inf where it is not (``N = window ** 2``), broadcast over images and heads. An additive
            float mask, because a boolean one is converted to this on every attention call.
        """
        return self._cached("shift mask", height, width, device, lambda: self._shift_mask(height, width, device))

    def _shift_mask(self, height: Size, width: Size, device: torch.device) -> Tensor:
        rows, cols = self._axis_grid(height, width, False, 0, True, device)
        row_region = (rows >= height - self.window).long() + (rows >= height - self.shift).long()
        col_region = (cols >= width - self.window).long() + (cols >= width - self.shift).long()
        border = self._border_order(height, width, device)  # raster indices: row * n_cols + col
        n_cols = width // self.window
        row_region, col_region = (
            row_region.index_select(0, border // n_cols),
            col_region.index_select(0, border % n_cols),
        )
        region = (row_region[:, :, None] * 3 + col_region[:, None, :]).reshape(-1, self.window**2)
        # One bool and one float tensor of the mask's size: built through zeros, ~allowed and an out-of-place
        # fill, it took three times the memory at its peak.
        blocked = (region[:, :, None] != region[:, None, :]).unsqueeze(1)
        return torch.where(blocked, float("-inf"), 0.0)

    # ------------------------------------------------------------------------------------------------ caching

    def _cached(
        self, name: str, height: Size, width: Size, device: torch.device, compute: Callable[[], Tensor]
    ) -> Tensor:
        """``compute()``, kept per map size and device (see :data:`CACHE_BYTES`): eagerly only; traced or
        compiled, the computation belongs in the graph. Tiling an image alternates between a few tile shapes
        (full tiles, the last column's, the last row's), each of which would otherwise recompute its indices
        and mask whenever the shape changes."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return compute()
        key = (height, width, device)
        if next(reversed(self._cache), None) != key:  # the size changed: make it the most recent, evict the rest
            entries = self._cache.pop(key, {})
            others = sum(t.numel() * t.element_size() for cached in self._cache.values() for t in cached.values())
            while self._cache and others > CACHE_BYTES:
                oldest = self._cache.pop(next(iter(self._cache)))
                others -= sum(t.numel() * t.element_size() for t in oldest.values())
            self._cache[key] = entries
        entries = self._cache[key]
        if name not in entries:
            entries[name] = compute()
        return entries[name]
