"""The retina of the Recurrent Attention Model: k square patches around a location,
each next one glimpse_scale times wider, average-pooled to g x g.

Shapes use B for the batch, C, H, W for the image's channels, height and width,
g for the patch size and k for the number of patches per glimpse.
"""
import os

# numba keeps the compiled loops outside the checkout, beside the canvases: in __pycache__
# next to this file, every edit of a loop left more compiled code in the tree. Set before
# numba is imported, which reads it then; a cache folder it cannot write, it skips.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache",
                                                      "ram-paddle", "numba"))
import numba
import numpy as np
import paddle
import paddle.nn.functional as F

# Every way to cut the patches (see Retina); main.py's --retina_method offers these.
METHODS = ("auto", "numpy", "paddle", "loop")


def as_array(tensor):
    """A NumPy view of a CPU Tensor's memory through DLPack (tensor.numpy() would
    copy it: the whole batch, at every glimpse); a GPU Tensor is copied over."""
    return np.from_dlpack(tensor if tensor.place.is_cpu_place() else tensor.cpu())


def as_tensor(array, place):
    """A new NumPy array as a Tensor on place: on the CPU its own memory, through DLPack
    (paddle.to_tensor would copy it: 3 MB a glimpse of an M=10 evaluation at 100x100)."""
    if place.is_cpu_place():
        return paddle.utils.dlpack.from_dlpack(array)
    return paddle.to_tensor(array, place=place)


def pixel_centres(l, height, width):
    """The pixel (row, column) a location looks at, as int64 (B,) arrays or
    Tensors, like l: int(0.5 * (l + 1) * size) on each axis, as in the PyTorch
    reference. l is (B, 2) of (column, row), (-1, -1) the top-left corner."""
    rows = (0.5 * ((l[:, 1] + 1.0) * height)).astype("int64")
    cols = (0.5 * ((l[:, 0] + 1.0) * width)).astype("int64")
    return rows, cols


LEVELS = 255  # an 8-bit image's pixels are whole numbers of 255ths


# The "numpy" method's loops, compiled by numba (and cached, see above): one pass over
# what the table or phi needs, where NumPy and Paddle made index arrays, gathers and
# temporaries at every batch and glimpse, several times slower (docs/performance.md). Each
# value is computed as before, in the same order or exactly: the glimpses are bit for bit
# what they were.
@numba.njit(cache=True)
def pooled_patches(table, rows, cols, edges, areas, phi):
    """Fill phi (N, k * C * g * g) from a summed-area table (B, C, H + 1, W + 1): location n,
    centred on pixel (rows[n], cols[n]) of image n mod B; edges (k, g + 1), the pooled rows'
    (and columns') edges relative to the centre; areas (k,) float32, each scale's divisor."""
    B, C, H, W = table.shape[0], table.shape[1], table.shape[2] - 1, table.shape[3] - 1
    k, g = edges.shape[0], edges.shape[1] - 1
    columns = np.empty(g + 1, np.int64)
    strips = np.empty(g + 1, table.dtype)  # S[r1, c] - S[r0, c] at each column edge c
    # Image by image, all of an image's locations (its M paths) while its table is in the
    # cache: an M=10 evaluation's retina 1.2x (60x60) to 1.3x (100x100) faster than location by
    # location (benchmarks/retina_parts.py).
    for b in range(B):
        for n in range(b, len(rows), B):
            for s in range(k):
                for j in range(g + 1):
                    columns[j] = min(max(cols[n] + edges[s, j], 0), W)
                for c in range(C):
                    plane = table[b, c]
                    for i in range(g):
                        r0 = min(max(rows[n] + edges[s, i], 0), H)
                        r1 = min(max(rows[n] + edges[s, i + 1], 0), H)
                        for j in range(g + 1):
                            strips[j] = plane[r1, columns[j]] - plane[r0, columns[j]]
                        # S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]: rows, then columns
                        for j in range(g):
                            phi[n, ((s * C + c) * g + i) * g + j] = (
                                np.float32(strips[j + 1] - strips[j]) / areas[s])


@numba.njit(cache=True)
def count_table(images, table):
    """Fill table (B, C, H + 1, W + 1), zeros, with the summed-area table of float32 images
    (B, C, H, W) counted in 255ths, S[:, :, r, c] the count of x[:, :, :r, :c]; stop and return
    False at the first pixel that is not a whole number of 255ths in [0, 1] (to float32's
    precision: within 1e-3 of one). The sums are whole numbers: exact in float32 below 2^24."""
    B, C, H, W = images.shape
    for b in range(B):
        for c in range(C):
            for r in range(H):
                row = np.float32(0)
                for q in range(W):
                    scaled = images[b, c, r, q] * np.float32(LEVELS)
                    count = np.rint(scaled)
                    if not (0 <= count <= LEVELS and -1e-3 < scaled - count < 1e-3):
                        return False
                    row += count
                    table[b, c, r + 1, q + 1] = table[b, c, r, q + 1] + row
    return True


@numba.njit(cache=True)
def patch_pixels(images, rows, cols, offsets, k, phi):
    """Fill phi (N, k * C * g * g) with the g x g pixels of images (B, C, H, W) at rows[n] +
    offsets, cols[n] + offsets (offsets: (g,)) of image n mod B, zero outside the image,
    repeated for the k identical patches of a retina that does not pool."""
    B, C, H, W = images.shape
    g = len(offsets)
    for n in range(len(rows)):
        b = n % B
        for c in range(C):
            for i in range(g):
                r = rows[n] + offsets[i]
                for j in range(g):
                    q = cols[n] + offsets[j]
                    value = images[b, c, r, q] if 0 <= r < H and 0 <= q < W else np.float32(0)
                    for s in range(k):
                        phi[n, ((s * C + c) * g + i) * g + j] = value


class Retina:
    """Foveated glimpse sensor: k square patches centred on one location.

    The first patch is g x g, each next one glimpse_scale times wider; pixels
    outside the image are zeros. Each wider patch is average-pooled down to
    g x g, so the network sees the centre sharply and the surround coarsely.
    A patch of side `size` centred on pixel (row, col) covers rows and columns
    [centre - size // 2, centre - size // 2 + size), as in the reference.

    Three ways to cut the patches (METHODS) compute the same phi:
      "loop":   per image and scale, slice a zero-padded copy (the reference's way);
      "numpy":  from the images' summed-area table, in numba's loops over NumPy arrays
                (a retina that does not pool reads the pixels themselves: see below);
      "paddle": the same with Paddle ops, so that a GPU batch stays on the GPU.
    "auto" takes "numpy" for a batch on the CPU (the fastest there: see
    benchmark.py) and "paddle" on any other device.

    Summed-area table: with S[r, c] the sum of the pixels above and left of
    (r, c), a pooled pixel covering rows [r0, r1) and columns [c0, c1) is
    (S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]) / f^2. A scale then reads
    (g + 1)^2 corners, shared by neighbouring pooled pixels, whatever f is, where
    cutting the patch out reads its g^2 f^2 pixels: 6x fewer reads at 60x60 with
    k=3, 18x fewer at 100x100 with k=4. Clipping r0, r1, c0, c1 to
    the image's edges leaves out exactly the pixels beyond them, which are zeros.
    The table is made once per batch and shared by its T glimpses (see
    summed_area_table), in float64 so that the differences keep float32's precision.
    A retina that does not pool (every patch g x g, as the 28x28 default's one
    8x8 patch) has nothing to gain from it: "numpy" then reads the pixels directly.
    """

    def __init__(self, patch_size, num_patches, glimpse_scale, method="auto"):
        if method not in METHODS:
            raise ValueError(f"retina method must be one of {METHODS}, got {method!r}")
        self.patch_size = patch_size
        self.num_patches = num_patches
        self.glimpse_scale = glimpse_scale
        self.method = method
        # Integer scales keep every side a multiple of g, so pooling is exact.
        self.sizes = [patch_size * glimpse_scale**i for i in range(num_patches)]
        self.pools = self.sizes[-1] > patch_size
        # (k, 1, 1): the pixels each pooled pixel averages, f^2, per scale.
        self.pool_areas = np.array([(size // patch_size) ** 2 for size in self.sizes],
                                   np.float32).reshape(-1, 1, 1)
        # (k, g + 1): the edges of each scale's g pooled rows (or columns),
        # relative to the centre pixel.
        self.edges = np.stack([np.arange(patch_size + 1) * (size // patch_size) - size // 2
                               for size in self.sizes])

    def patch_boxes(self, locations, height, width):
        """Where each patch lies in the image, for drawing it: an int array (B, k, 4)
        of top, left, bottom, right (the last two exclusive), clipped at the border
        (the patch holds zeros beyond it). locations: float32 array (B, 2)."""
        rows, cols = pixel_centres(locations, height, width)
        sizes = np.array(self.sizes)
        top, left = rows[:, None] - sizes // 2, cols[:, None] - sizes // 2
        return np.stack([np.clip(top, 0, height), np.clip(left, 0, width),
                         np.clip(top + sizes, 0, height), np.clip(left + sizes, 0, width)], axis=-1)

    def resolve(self, x):
        """The method that runs for images x: "auto" made concrete."""
        if self.method == "auto":
            return "numpy" if x.place.is_cpu_place() else "paddle"
        return self.method

    def uses_table(self, method):
        """Whether `method` cuts the patches from a summed-area table."""
        return method == "paddle" or (method == "numpy" and self.pools)

    def summed_area_table(self, x):
        """The summed-area table of images x (B, C, H, W), computed once per batch:
        (B, C, H + 1, W + 1), S[:, :, r, c] the sum of x[:, :, :r, :c]; a NumPy array
        for "numpy", a Tensor on x's device for "paddle", and None where foveate uses
        none ("loop", and "numpy" without pooling: see uses_table).

        float64, so that the differences keep float32's precision; but for NumPy,
        when every pixel is a whole number of 255ths in [0, 1], as the canvases'
        are, float32 counts of 255ths: exact while a sum stays below 2^24 (images of
        up to 65,793 pixels), in half the bytes, checked and summed in one pass
        (count_table). Otherwise Paddle's cumsum makes the float64 sums, both axes in
        about a tenth of the time of NumPy's, which does not vectorise them."""
        method = self.resolve(x)
        if not self.uses_table(method):
            return None
        if method == "paddle":
            table = x.astype("float64").cumsum(axis=2).cumsum(axis=3)
            return F.pad(table, [1, 0, 1, 0])  # a zero row on top, a zero column on the left
        images = as_array(x)
        B, C, H, W = images.shape
        if H * W * LEVELS < 2**24:
            table = np.zeros((B, C, H + 1, W + 1), np.float32)  # a zero row and column first
            if count_table(images, table):
                return table
        sums = as_array(x.astype("float64").cumsum(axis=2).cumsum(axis=3))
        table = np.zeros((B, C, H + 1, W + 1), np.float64)
        table[:, :, 1:, 1:] = sums  # one copy: Paddle's pad is several times slower
        return table

    def foveate(self, x, l, table=None):
        """The glimpse phi at each location.

        Args:
            x: Tensor (B, C, H, W), the images.
            l: Tensor (N, 2), the locations, N a multiple of B: location i looks at
                image i mod B (several glimpse paths per image, in evaluation).
            table: summed_area_table(x), when the caller keeps it for the batch's
                next glimpses; made here when None.
        Returns:
            phi: Tensor (N, k * C * g * g) on x's device: the k pooled patches in
            order of size, each flattened as (C, g, g).
        """
        method = self.resolve(x)
        if method == "loop":
            return as_tensor(self.foveate_loop(as_array(x), as_array(l)), x.place)
        if not self.uses_table(method):
            return as_tensor(self.pixels_numpy(as_array(x), as_array(l)), x.place)
        if table is None:
            table = self.summed_area_table(x)
        if method == "paddle":
            return self.foveate_paddle(table, l)
        return as_tensor(self.foveate_numpy(table, as_array(l)), x.place)

    def foveate_numpy(self, table, locations):
        """phi as a float32 array (N, k * C * g * g), from a NumPy summed-area table
        (B, C, H + 1, W + 1) (see summed_area_table) and float32 locations (N, 2), N a
        multiple of B."""
        H, W = table.shape[2] - 1, table.shape[3] - 1
        rows, cols = pixel_centres(locations, H, W)
        # A float32 table counts 255ths of a pixel (see summed_area_table).
        areas = self.pool_areas.reshape(-1) * (LEVELS if table.dtype == np.float32 else 1)
        phi = np.empty((len(locations), self.num_patches * table.shape[1] * self.patch_size**2),
                       np.float32)
        pooled_patches(table, rows, cols, self.edges, areas.astype(np.float32), phi)
        return phi

    def pixels_numpy(self, images, locations):
        """phi as a float32 array (N, k * C * g * g) of a retina that does not pool:
        the g x g pixels around each location, read from float32 images (B, C, H, W)
        in place, zero outside the image, repeated for the k identical patches.
        locations: (N, 2), N a multiple of B."""
        B, C, H, W = images.shape
        rows, cols = pixel_centres(locations, H, W)
        phi = np.empty((len(locations), self.num_patches * C * self.patch_size**2), np.float32)
        patch_pixels(images, rows, cols, self.edges[0, :-1], self.num_patches, phi)
        return phi

    def foveate_paddle(self, table, l):
        """phi as a float32 Tensor (N, k * C * g * g), from a summed-area table Tensor
        (B, C, H + 1, W + 1) and locations l (N, 2), N a multiple of B, with Paddle ops only.
        Only the batch dimension is ever left unknown (-1), so that paddle.jit can
        trace it for a graph of any batch size (export_model.py)."""
        C, H, W = table.shape[1], table.shape[2] - 1, table.shape[3] - 1
        k, g, plane = self.num_patches, self.patch_size, (H + 1) * (W + 1)
        rows, cols = pixel_centres(l, H, W)
        edges = paddle.to_tensor(self.edges)  # on the current device, as table is
        # maximum and minimum, not clip: oneDNN's clip of int64 (Paddle Inference's
        # default on the CPU) returns wrong values.
        zero = paddle.zeros([], "int64")
        row_edges = paddle.minimum(paddle.maximum(rows.reshape([-1, 1, 1]) + edges, zero),
                                   paddle.full([], H, "int64"))  # (N, k, g + 1)
        col_edges = paddle.minimum(paddle.maximum(cols.reshape([-1, 1, 1]) + edges, zero),
                                   paddle.full([], W, "int64"))
        index = (row_edges.unsqueeze(3) * (W + 1) + col_edges.unsqueeze(2)).reshape(
            [-1, 1, k * (g + 1) ** 2])
        # One gather from the flattened table: channel c of image n mod B, which location
        # n looks at, starts at (n mod B * C + c) * plane. The M paths of evaluation
        # share the table, uncopied, as the NumPy method's take does.
        images = paddle.arange(paddle.shape(l)[0]) % paddle.shape(table)[0]
        starts = (images.unsqueeze(1) * C + paddle.arange(C)).unsqueeze(2) * plane  # (N, C, 1)
        corners = paddle.gather(table.reshape([-1]), (index + starts).reshape([-1]))
        return self.pool(corners.reshape([-1, C, k * (g + 1) ** 2]),
                         paddle.to_tensor(self.pool_areas))

    def pool(self, corners, pool_areas):
        """(B, C, k * (g + 1)^2) table values at the pooled pixels' corners, in
        (k, g + 1, g + 1) order -> phi (B, k * C * g * g), float32 Tensors (the "paddle"
        method's; pooled_patches does the same for "numpy")."""
        C = corners.shape[1]
        k, g = self.num_patches, self.patch_size
        corners = corners.reshape([-1, C, k, g + 1, g + 1])
        # S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0], as two differences: rows, then columns.
        rows = corners[:, :, :, 1:] - corners[:, :, :, :-1]  # (B, C, k, g, g + 1)
        sums = rows[:, :, :, :, 1:] - rows[:, :, :, :, :-1]
        phi = sums.astype("float32") / pool_areas  # (B, C, k, g, g)
        return phi.transpose([0, 2, 1, 3, 4]).reshape([-1, k * C * g * g])

    def foveate_loop(self, images, locations):
        """phi from arrays, one location and scale at a time: the PyTorch reference's
        method. Location n looks at image n mod B."""
        B, C, H, W = images.shape
        N = len(locations)
        pad = self.sizes[-1]
        padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        rows, cols = pixel_centres(locations, H, W)
        g = self.patch_size
        phi = np.empty((N, self.num_patches, C, g, g), np.float32)
        for n in range(N):
            for i, size in enumerate(self.sizes):
                # A corner beyond the padding belongs to a patch wholly outside the
                # image: clipping moves it to another all-zero place.
                top = np.clip(rows[n] - size // 2 + pad, 0, H + 2 * pad - size)
                left = np.clip(cols[n] - size // 2 + pad, 0, W + 2 * pad - size)
                patch = padded[n % B, :, top:top + size, left:left + size]
                f = size // g
                phi[n, i] = patch.reshape(C, g, f, g, f).mean(axis=(2, 4))
        return phi.reshape(N, -1)
