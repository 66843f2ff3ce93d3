#include "braid_data_shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Dataset files are inflated in memory: a gzip bomb (about 1000:1 per member) must stop at
 * a size no real dataset file of Braid's reaches. */
#define BRAID_MAX_GUNZIP ((size_t)1 << 31)

int braid_gunzip(const unsigned char *data, size_t size, unsigned char **out, size_t *out_size,
                 char *message, size_t message_size) {
    *out = NULL;
    *out_size = 0;
    z_stream stream;
    memset(&stream, 0, sizeof stream);
    if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) {
        snprintf(message, message_size, "zlib initialisation failed");
        return -1;
    }
    size_t capacity = size * 4 + 1024, length = 0;
    unsigned char *buffer = malloc(capacity);
    stream.next_in = (unsigned char *)data;
    stream.avail_in = (uInt)size;
    int status = Z_OK;
    int too_large = 0;
    while (buffer) {
        if (length > BRAID_MAX_GUNZIP) { too_large = 1; break; }
        if (capacity - length < 65536) {
            unsigned char *grown = realloc(buffer, capacity * 2);
            if (!grown) { free(buffer); buffer = NULL; break; }
            buffer = grown;
            capacity *= 2;
        }
        stream.next_out = buffer + length;
        stream.avail_out = (uInt)(capacity - length);
        status = inflate(&stream, Z_NO_FLUSH);
        length = capacity - stream.avail_out;
        if (status == Z_STREAM_END) {
            if (stream.avail_in == 0) break;
            inflateReset(&stream);  // a following gzip member
            continue;
        }
        if (status != Z_OK) break;
        if (stream.avail_in == 0 && stream.avail_out != 0) { status = Z_BUF_ERROR; break; }
    }
    const char *reason = stream.msg;
    inflateEnd(&stream);
    if (!buffer) { snprintf(message, message_size, "out of memory"); return -1; }
    if (too_large) {
        free(buffer);
        snprintf(message, message_size, "gzip data inflates to more than %zu bytes", BRAID_MAX_GUNZIP);
        return -1;
    }
    if (status != Z_STREAM_END) {
        free(buffer);
        snprintf(message, message_size, "corrupt or truncated gzip data%s%s",
                 reason ? ": " : "", reason ? reason : "");
        return -1;
    }
    *out = buffer;
    *out_size = length;
    return 0;
}
