// libpng and libjpeg report fatal errors by longjmp, which Swift cannot catch: the decoders
// live here so every error returns through setjmp as a message.
#include "braid_data_shim.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

void braid_free(void *pointer) { free(pointer); }

static void set_message(char *message, size_t size, const char *text) {
    if (message && size) snprintf(message, size, "%s", text);
}

/* Images larger than this are refused before any pixel buffer is allocated: a few hundred
 * bytes can declare a 65535 x 65535 image. */
#define BRAID_MAX_IMAGE_PIXELS ((size_t)1 << 26)

/* deflate cannot compress better than 1032:1, so a PNG whose raw rows would need more than
 * this many times its own size is truncated or hostile. */
#define BRAID_DEFLATE_MAX_RATIO 1032

/* Progressive JPEGs with thousands of scans take minutes to decode (libjpeg-turbo's advice
 * is to cap the scan count); real encoders write about ten. */
#define BRAID_MAX_JPEG_SCANS 500

static int too_many_pixels(size_t width, size_t height, char *message, size_t message_size) {
    if (width == 0 || height == 0 || width * height > BRAID_MAX_IMAGE_PIXELS) {
        char text[160];
        snprintf(text, sizeof text, "image is %zu x %zu pixels; Braid decodes images of 1 to %zu pixels",
                 width, height, BRAID_MAX_IMAGE_PIXELS);
        set_message(message, message_size, text);
        return 1;
    }
    return 0;
}

/* ---- PNG ---- */

typedef struct {
    const unsigned char *data;
    size_t size;
    size_t offset;
    char *message;
    size_t message_size;
    unsigned char *out;
    size_t out_size;
    size_t out_capacity;
} png_io;

static void png_fail(png_structp png, png_const_charp text) {
    png_io *io = (png_io *)png_get_error_ptr(png);
    set_message(io->message, io->message_size, text);
    png_longjmp(png, 1);
}

static void png_warn(png_structp png, png_const_charp text) { (void)png; (void)text; }

static void png_read_memory(png_structp png, png_bytep dst, png_size_t length) {
    png_io *io = (png_io *)png_get_io_ptr(png);
    if (io->size - io->offset < length) png_error(png, "truncated PNG data");
    memcpy(dst, io->data + io->offset, length);
    io->offset += length;
}

int braid_png_decode(const unsigned char *data, size_t size, braid_image *out,
                     char *message, size_t message_size) {
    memset(out, 0, sizeof *out);
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        set_message(message, message_size, "not a PNG file (bad signature)");
        return -1;
    }
    png_io io = {data, size, 0, message, message_size, NULL, 0, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, png_fail, png_warn);
    if (!png) { set_message(message, message_size, "out of memory"); return -1; }
    png_infop info = png_create_info_struct(png);
    unsigned char *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        // Checked before destroying: png_destroy_read_struct clears `info`, and testing it
        // afterwards replaced every libpng message with "out of memory".
        if (!info) set_message(message, message_size, "out of memory");
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        return -1;
    }
    png_set_read_fn(png, &io, png_read_memory);
    png_set_user_limits(png, 1 << 16, 1 << 16);
    png_read_info(png, info);
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    {
        size_t file_width = png_get_image_width(png, info), file_height = png_get_image_height(png, info);
        if (too_many_pixels(file_width, file_height, message, message_size)) png_longjmp(png, 1);
        size_t raw = (png_get_rowbytes(png, info) + 1) * file_height;
        if (raw / BRAID_DEFLATE_MAX_RATIO > size) {
            char text[200];
            snprintf(text, sizeof text, "declares %zu x %zu pixels (%zu bytes of rows) but the file has only %zu bytes",
                     file_width, file_height, raw, size);
            png_error(png, text);
        }
    }
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (depth == 16) png_set_swap(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int width = (int)png_get_image_width(png, info);
    int height = (int)png_get_image_height(png, info);
    int channels = png_get_channels(png, info);
    int out_depth = png_get_bit_depth(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    if (row_bytes != (size_t)width * channels * (out_depth / 8)) png_error(png, "unexpected row layout");
    pixels = malloc(row_bytes * (size_t)height + 1);
    rows = malloc(sizeof(png_bytep) * (size_t)height + 1);
    if (!pixels || !rows) png_error(png, "out of memory");
    for (int y = 0; y < height; y++) rows[y] = pixels + row_bytes * (size_t)y;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->width = width;
    out->height = height;
    out->channels = channels;
    out->bit_depth = out_depth;
    out->pixels = pixels;
    return 0;
}

static void png_write_memory(png_structp png, png_bytep src, png_size_t length) {
    png_io *io = (png_io *)png_get_io_ptr(png);
    if (io->out_capacity - io->out_size < length) {
        size_t capacity = io->out_capacity ? io->out_capacity : 4096;
        while (capacity - io->out_size < length) capacity *= 2;
        unsigned char *grown = realloc(io->out, capacity);
        if (!grown) png_error(png, "out of memory");
        io->out = grown;
        io->out_capacity = capacity;
    }
    memcpy(io->out + io->out_size, src, length);
    io->out_size += length;
}

static void png_flush_memory(png_structp png) { (void)png; }

int braid_png_encode(const unsigned char *pixels, int width, int height, int channels,
                     int bit_depth, unsigned char **out, size_t *out_size,
                     char *message, size_t message_size) {
    static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                       PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    *out = NULL;
    *out_size = 0;
    if (channels < 1 || channels > 4 || (bit_depth != 8 && bit_depth != 16) || width < 1 || height < 1) {
        set_message(message, message_size, "unsupported PNG layout");
        return -1;
    }
    png_io io = {NULL, 0, 0, message, message_size, NULL, 0, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &io, png_fail, png_warn);
    if (!png) { set_message(message, message_size, "out of memory"); return -1; }
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(png_jmpbuf(png))) {
        free(io.out);
        png_destroy_write_struct(&png, info ? &info : NULL);
        if (!info) set_message(message, message_size, "out of memory");
        return -1;
    }
    png_set_write_fn(png, &io, png_write_memory, png_flush_memory);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, bit_depth,
                 color_types[channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    if (bit_depth == 16) png_set_swap(png);
    size_t row_bytes = (size_t)width * channels * (bit_depth / 8);
    for (int y = 0; y < height; y++) png_write_row(png, pixels + row_bytes * (size_t)y);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = io.out;
    *out_size = io.out_size;
    return 0;
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char *message;
    size_t message_size;
} jpeg_error;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_error *err = (jpeg_error *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    set_message(err->message, err->message_size, text);
    longjmp(err->jump, 1);
}

static void jpeg_progress(j_common_ptr cinfo) {
    if (cinfo->is_decompressor &&
        ((j_decompress_ptr)cinfo)->input_scan_number > BRAID_MAX_JPEG_SCANS) {
        jpeg_error *err = (jpeg_error *)cinfo->err;
        char text[120];
        snprintf(text, sizeof text, "progressive JPEG has more than %d scans", BRAID_MAX_JPEG_SCANS);
        set_message(err->message, err->message_size, text);
        longjmp(err->jump, 1);
    }
}

static void jpeg_note(j_common_ptr cinfo, int level) {
    // A premature end of data is only a warning to libjpeg (it pads with gray); for a
    // training set that silently corrupts an image, so it is fatal here. So is a scan that
    // ends early: otherwise a few hundred bytes can declare millions of blocks.
    if (level < 0 && (cinfo->err->msg_code == JWRN_JPEG_EOF || cinfo->err->msg_code == JWRN_HIT_MARKER))
        jpeg_fail(cinfo);
    if (level < 0) cinfo->err->num_warnings++;
}

int braid_jpeg_decode(const unsigned char *data, size_t size, braid_image *out,
                      char *message, size_t message_size) {
    memset(out, 0, sizeof *out);
    if (size < 3 || data[0] != 0xFF || data[1] != 0xD8) {
        set_message(message, message_size, "not a JPEG file (no SOI marker)");
        return -1;
    }
    struct jpeg_decompress_struct cinfo;
    jpeg_error err;
    unsigned char *volatile pixels = NULL;
    cinfo.err = jpeg_std_error(&err.base);
    err.base.error_exit = jpeg_fail;
    err.base.emit_message = jpeg_note;
    err.message = message;
    err.message_size = message_size;
    if (setjmp(err.jump)) {
        free(pixels);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    struct jpeg_progress_mgr progress = {jpeg_progress, 0, 0, 0, 0};
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    cinfo.mem->max_memory_to_use = (long)1 << 30;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (too_many_pixels(cinfo.image_width, cinfo.image_height, message, message_size)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        set_message(message, message_size, "CMYK JPEG is not supported");
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int width = (int)cinfo.output_width;
    int height = (int)cinfo.output_height;
    int channels = cinfo.output_components;
    size_t row_bytes = (size_t)width * channels;
    pixels = malloc(row_bytes * (size_t)height + 1);
    if (!pixels) {
        set_message(message, message_size, "out of memory");
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + row_bytes * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    out->width = width;
    out->height = height;
    out->channels = channels;
    out->bit_depth = 8;
    out->pixels = pixels;
    return 0;
}
