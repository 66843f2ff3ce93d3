#ifndef BRAID_DATA_SHIM_H
#define BRAID_DATA_SHIM_H

#include <stddef.h>
#include <stdint.h>

/// A decoded image: `height` rows of `width` pixels of `channels` interleaved samples.
/// `bit_depth` 8 stores one byte per sample; 16 stores one native-endian uint16 per sample.
/// `pixels` is malloc'd by the decoder and released with braid_free.
typedef struct {
    int width;
    int height;
    int channels;
    int bit_depth;
    unsigned char *pixels;
} braid_image;

/// Decodes a PNG held in memory. Palette, low-bit gray and tRNS are expanded, so the result
/// has 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels of 8 or 16 bits. No gamma
/// transform is applied (samples are the file's own values). Returns 0, or -1 with a
/// NUL-terminated reason in `message`.
int braid_png_decode(const unsigned char *data, size_t size, braid_image *out,
                     char *message, size_t message_size);

/// Decodes a baseline or progressive JPEG held in memory into 1 (gray) or 3 (RGB) channels
/// of 8 bits. A truncated file is an error (not a gray-filled image).
int braid_jpeg_decode(const unsigned char *data, size_t size, braid_image *out,
                      char *message, size_t message_size);

/// Encodes `channels` (1..4) interleaved samples of 8 or 16 bits (16: native-endian uint16)
/// as a PNG in memory; `*out` is malloc'd (release with braid_free).
int braid_png_encode(const unsigned char *pixels, int width, int height, int channels,
                     int bit_depth, unsigned char **out, size_t *out_size,
                     char *message, size_t message_size);

/// Inflates a gzip stream (several members allowed) into a malloc'd buffer.
int braid_gunzip(const unsigned char *data, size_t size, unsigned char **out, size_t *out_size,
                 char *message, size_t message_size);

/// Checks the HDF5 file at `path` before libhdf5 opens it: the structures on which libhdf5
/// 1.10 loops, allocates without bound or reads out of bounds (global heap collections and
/// the variable-length attribute values that refer to them; see hdf5_preflight.c for what is
/// parsed and what is refused). Returns 0 when the file may be opened (also when it cannot be
/// read or is not HDF5: libhdf5 then reports that), or -1 with the reason in `message`.
int braid_h5_preflight(const char *path, char *message, size_t message_size);

/// Rank (at most 8) and dimensions of dataset `name` in the HDF5 file at `path`.
int braid_h5_dataset_shape(const char *path, const char *name, int *rank, int64_t *dims,
                           char *message, size_t message_size);

/// Reads the whole dataset `name` converted to float (`as_int` 0) or int64 (`as_int` 1)
/// into `out`, which holds `count` elements (the product of the dataset's dimensions).
int braid_h5_read(const char *path, const char *name, int as_int, void *out, size_t count,
                  char *message, size_t message_size);

void braid_free(void *pointer);

#endif
