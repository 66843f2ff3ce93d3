/* Checks an HDF5 file's bytes, before libhdf5 1.10 opens it, for the structures on which
 * libhdf5 loops for ever, allocates without bound or reads out of bounds.
 *
 * Approach: the file is parsed, not scanned. From the superblock (versions 0-3) every
 * object header (versions 1 and 2, with their continuation chunks) reachable through hard
 * links is visited: old-style groups through their symbol table (v1 B-tree, symbol nodes),
 * new-style compact groups through their link messages. An old-style group's local heap
 * must hold its data block inside the file, a free list without cycles, and every name a
 * B-tree key, symbol entry or soft link points to. Every address followed must lie in the
 * file: libhdf5 reads some (a group's local heap) without checking them. In each header
 * every attribute message (0x000C) is decoded (versions 1-3: datatype, dataspace, data):
 * its value must fit in the message (libhdf5 copies element count x size), and every
 * variable-length descriptor of a variable-length attribute (datatype class 9, string or
 * sequence: 4-byte length, 8-byte collection address, 4-byte object index) must refer to a
 * global heap collection found in the file, to an object index (not 0) that the collection
 * holds, and that object's size must be exactly length x base-type size. That is what makes
 * libhdf5's read safe: H5T__conv_vlen allocates length x base size and H5HG_read then copies
 * the object's whole size into it without checking either, nor that the object exists.
 * Every global heap collection ("GCOL") in the file is also walked the way libhdf5 walks it,
 * and one whose free space has size 0 (libhdf5 loops for ever) or whose object runs past
 * its end is refused. The whole walk examines at most 16 times the file's bytes.
 *
 * Limits, each refused rather than guessed at: addresses or lengths other than 8 bytes;
 * dense (fractal-heap) link or attribute storage; shared attribute messages or shared
 * datatypes in attributes; external and user-defined links; variable-length attributes
 * whose base type is itself variable-length, compound or an array. Not checked:
 * variable-length data inside compound or array attributes and inside datasets, and dataset
 * fill values. Braid never reads those: its readers read attributes only of the string
 * class and datasets only of numeric classes, for which libhdf5 never touches the global
 * heap. Nor are libhdf5's own decoders of datatypes, dataspaces or B-tree records checked
 * beyond what is listed. The traversal follows the object headers' messages, as libhdf5
 * does when it reads; the symbol-table entries' cached copies are ignored. */
#define _GNU_SOURCE
#include "braid_data_shim.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define UNDEF_ADDR UINT64_MAX

enum { KIND_HEAP = 0, KIND_HEADER = 1, KIND_BTREE = 2, KIND_SNOD = 3 };

/* A structure to visit: (address << 2 | kind), and for group B-tree nodes and symbol nodes
 * the address of the local heap that holds their link names (UNDEF_ADDR otherwise). */
typedef struct { uint64_t key; uint64_t heap; } item;

typedef struct { uint64_t collection; uint32_t index; uint64_t size; } heap_object;

typedef struct {
    const uint8_t *b;
    size_t n;
    size_t base;               /* file offset of the superblock: addresses are relative to it */
    char *message;
    size_t message_size;
    /* Global heap objects, sorted by (collection, index); collections in file order. */
    heap_object *objects;
    size_t nobjects, objects_cap;
    uint64_t *collections;
    size_t ncollections, collections_cap;
    /* Structures still to visit, and every one seen, in an open-addressed set (key + 1, so
     * that 0 marks an empty slot). */
    item *todo;
    size_t ntodo, todo_cap;
    item *seen;
    size_t nseen, seen_cap;
    /* Bytes the walk may still examine. A valid file's structures do not overlap, so the
     * walk reads each byte about once; a crafted one can make structures share bytes
     * (collections inside collections, headers sharing a continuation chunk) and would
     * otherwise cost time quadratic in its size. */
    uint64_t budget;
} checker;

static int refuse(checker *c, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(c->message, c->message_size, format, args);
    va_end(args);
    return -1;
}

/* Charges `bytes` to the budget; refuses the file once it is spent. */
static int spend(checker *c, uint64_t bytes) {
    if (bytes > c->budget) {
        return refuse(c, "the file's HDF5 structures overlap so much that checking them would read it more than %d times over",
                      16);
    }
    c->budget -= bytes;
    return 0;
}

static uint64_t le(const uint8_t *p, int width) {
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* True when [at, at + length) lies inside the file. */
static int inside(const checker *c, uint64_t at, uint64_t length) {
    return at <= c->n && length <= c->n - at;
}

/* File offset of address `a`, or UINT64_MAX when it is undefined or outside the file. */
static uint64_t offset_of(const checker *c, uint64_t a) {
    if (a == UNDEF_ADDR || a > c->n - c->base) return UINT64_MAX;
    return c->base + a;
}

static int grow(void **array, size_t *cap, size_t need, size_t width) {
    if (need <= *cap) return 0;
    size_t next = *cap ? *cap * 2 : 64;
    while (next < need) next *= 2;
    void *p = realloc(*array, next * width);
    if (!p) return -1;
    *array = p;
    *cap = next;
    return 0;
}

static uint64_t mix(uint64_t k) {
    k ^= k >> 33; k *= 0xff51afd7ed558ccdULL; k ^= k >> 33;
    return k;
}

static size_t slot(const item *it, size_t cap) { return mix(it->key ^ mix(it->heap)) & (cap - 1); }

/* Adds (kind, address, heap) to the work list unless it was seen before. */
static int visit(checker *c, int kind, uint64_t address, uint64_t heap) {
    /* libhdf5 does not check these addresses before reading (an undefined one made it copy
     * from a null pointer), and every address inside a file is below 2^62, so keys are unique. */
    if (offset_of(c, address) == UINT64_MAX) {
        static const char *names[] = {"local heap", "object header", "group B-tree", "group symbol node"};
        return refuse(c, "%s at address %llu is outside the file", names[kind], (unsigned long long)address);
    }
    item it = {(address << 2 | (uint64_t)kind) + 1, heap};
    if ((c->nseen + 1) * 2 > c->seen_cap) {
        size_t cap = c->seen_cap ? c->seen_cap * 2 : 1024;
        item *next = calloc(cap, sizeof *next);
        if (!next) return refuse(c, "out of memory while checking the file");
        for (size_t i = 0; i < c->seen_cap; i++) {
            if (!c->seen[i].key) continue;
            size_t j = slot(&c->seen[i], cap);
            while (next[j].key) j = (j + 1) & (cap - 1);
            next[j] = c->seen[i];
        }
        free(c->seen);
        c->seen = next;
        c->seen_cap = cap;
    }
    size_t j = slot(&it, c->seen_cap);
    while (c->seen[j].key) {
        if (c->seen[j].key == it.key && c->seen[j].heap == it.heap) return 0;
        j = (j + 1) & (c->seen_cap - 1);
    }
    c->seen[j] = it;
    c->nseen++;
    if (grow((void **)&c->todo, &c->todo_cap, c->ntodo + 1, sizeof *c->todo) < 0)
        return refuse(c, "out of memory while checking the file");
    it.key -= 1;
    c->todo[c->ntodo++] = it;
    return 0;
}

/* ---- global heap collections ---- */

/* Walks the collection at file offset `at` the way libhdf5's H5HG deserializer does and
 * records its objects; refuses what libhdf5 would loop on or read past. */
static int walk_collection(checker *c, size_t at) {
    uint64_t declared = le(c->b + at + 8, 8);
    size_t end = at + (declared < c->n - at ? declared : c->n - at);
    size_t p = at + 16;
    if (spend(c, end - at) < 0) return -1;
    if (grow((void **)&c->collections, &c->collections_cap, c->ncollections + 1, sizeof(uint64_t)) < 0)
        return refuse(c, "out of memory while checking the file");
    c->collections[c->ncollections++] = at;
    while (p + 16 <= end) {
        unsigned index = (unsigned)le(c->b + p, 2);
        uint64_t size = le(c->b + p + 8, 8);
        if (index == 0) {
            /* The free space, header included; it runs to the end of the collection. */
            if (size == 0)
                return refuse(c, "corrupt HDF5 global heap at byte %zu: free-space object at byte %zu has size 0 (libhdf5 would loop for ever)", at, p);
            if (size > end - p) return 0;
            p += size;
            continue;
        }
        if (size > end - p - 16)
            return refuse(c, "corrupt HDF5 global heap at byte %zu: object %u at byte %zu declares %llu bytes, past the collection's end at byte %zu",
                          at, index, p, (unsigned long long)size, end);
        if (grow((void **)&c->objects, &c->objects_cap, c->nobjects + 1, sizeof *c->objects) < 0)
            return refuse(c, "out of memory while checking the file");
        c->objects[c->nobjects++] = (heap_object){at, index, size};
        p += 16 + (size + 7) / 8 * 8;
    }
    return 0;
}

static int by_collection_index(const void *a, const void *b) {
    const heap_object *x = a, *y = b;
    if (x->collection != y->collection) return x->collection < y->collection ? -1 : 1;
    if (x->index != y->index) return x->index < y->index ? -1 : 1;
    return 0;
}

static int find_collections(checker *c) {
    static const uint8_t signature[5] = {'G', 'C', 'O', 'L', 1};
    size_t from = 0;
    while (c->n >= 16 && from + 16 <= c->n) {
        const uint8_t *hit = memmem(c->b + from, c->n - from - 15 + 4, signature, 5);
        if (!hit || (size_t)(hit - c->b) + 16 > c->n) break;
        size_t at = (size_t)(hit - c->b);
        from = at + 1;
        if (walk_collection(c, at) < 0) return -1;
    }
    if (c->nobjects > 1) qsort(c->objects, c->nobjects, sizeof *c->objects, by_collection_index);
    /* libhdf5 would keep the last object of a repeated index; libhdf5 never writes one. */
    for (size_t i = 1; i < c->nobjects; i++) {
        if (c->objects[i].collection == c->objects[i - 1].collection && c->objects[i].index == c->objects[i - 1].index)
            return refuse(c, "corrupt HDF5 global heap at byte %llu: object index %u appears twice",
                          (unsigned long long)c->objects[i].collection, c->objects[i].index);
    }
    return 0;
}

static const heap_object *heap_object_at(const checker *c, uint64_t collection, uint32_t index) {
    size_t lo = 0, hi = c->nobjects;
    heap_object key = {collection, index, 0};
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int order = by_collection_index(&c->objects[mid], &key);
        if (order == 0) return &c->objects[mid];
        if (order < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

static int is_collection(const checker *c, uint64_t at) {
    size_t lo = 0, hi = c->ncollections;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->collections[mid] == at) return 1;
        if (c->collections[mid] < at) lo = mid + 1; else hi = mid;
    }
    return 0;
}

/* ---- attributes ---- */

/* Number of elements of the dataspace message at [p, p + size), or -1 (with a message). */
static int64_t dataspace_elements(checker *c, const uint8_t *p, size_t size, uint64_t header) {
    if (size < 4) return refuse(c, "object header at byte %llu: attribute dataspace of %zu bytes", (unsigned long long)header, size);
    unsigned version = p[0], rank = p[1];
    size_t dims_at;
    if (version == 1) {
        dims_at = 8;
    } else if (version == 2) {
        dims_at = 4;
        if (p[3] == 0) return 1;      /* scalar */
        if (p[3] == 2) return 0;      /* null */
        if (p[3] != 1) return refuse(c, "object header at byte %llu: attribute dataspace of unknown type %u", (unsigned long long)header, p[3]);
    } else {
        return refuse(c, "object header at byte %llu: attribute dataspace version %u", (unsigned long long)header, version);
    }
    if (rank > 32) return refuse(c, "object header at byte %llu: attribute dataspace of rank %u", (unsigned long long)header, rank);
    if (dims_at + (size_t)rank * 8 > size)
        return refuse(c, "object header at byte %llu: attribute dataspace truncated", (unsigned long long)header);
    uint64_t count = 1;
    for (unsigned i = 0; i < rank; i++) {
        uint64_t d = le(p + dims_at + 8 * i, 8);
        if (d != 0 && count > ((uint64_t)1 << 40) / d)
            return refuse(c, "object header at byte %llu: attribute dataspace declares more than 2^40 elements", (unsigned long long)header);
        count *= d;
    }
    return (int64_t)count;
}

/* Checks the attribute message at [p, p + size) of the object header at file offset
 * `header`: every variable-length descriptor it holds must refer to an existing global heap
 * object of exactly the size libhdf5 will copy. */
static int check_attribute(checker *c, const uint8_t *p, size_t size, unsigned message_flags, uint64_t header) {
    unsigned long long h = (unsigned long long)header;
    if (message_flags & 0x02) return refuse(c, "object header at byte %llu: shared attribute message (not supported)", h);
    if (size < 8) return refuse(c, "object header at byte %llu: attribute message of %zu bytes", h, size);
    unsigned version = p[0], flags = version >= 2 ? p[1] : 0;
    size_t name_size = le(p + 2, 2), type_size = le(p + 4, 2), space_size = le(p + 6, 2);
    size_t at = version == 3 ? 9 : 8;
    if (version < 1 || version > 3) return refuse(c, "object header at byte %llu: attribute message version %u", h, version);
    if (flags & 0x03) return refuse(c, "object header at byte %llu: attribute with a shared datatype or dataspace (not supported)", h);
    size_t pad = version == 1 ? 7 : 0;
    size_t name_at = at, type_at = name_at + ((name_size + pad) & ~pad);
    size_t space_at = type_at + ((type_size + pad) & ~pad);
    size_t data_at = space_at + ((space_size + pad) & ~pad);
    if (data_at > size) return refuse(c, "object header at byte %llu: attribute message truncated", h);
    if (name_size == 0) return refuse(c, "object header at byte %llu: attribute without a name", h);
    char name[64];
    size_t shown = strnlen((const char *)p + name_at, name_size);
    if (shown > sizeof name - 1) shown = sizeof name - 1;
    memcpy(name, p + name_at, shown);
    name[shown] = 0;
    for (size_t i = 0; i < shown; i++) if (name[i] < 32 || name[i] > 126) name[i] = '?';
    if (type_size < 8) return refuse(c, "attribute '%s' (object header at byte %llu): datatype of %zu bytes", name, h, type_size);
    const uint8_t *type = p + type_at;
    uint64_t stored = le(type + 4, 4);
    int64_t count = dataspace_elements(c, p + space_at, space_size, header);
    if (count < 0) return -1;
    /* libhdf5 copies count x size bytes of value out of the message. */
    if (stored > 0 && (uint64_t)count > (size - data_at) / stored)
        return refuse(c, "attribute '%s' (object header at byte %llu): %lld values of %llu bytes do not fit in the %zu bytes the message holds",
                      name, h, (long long)count, (unsigned long long)stored, size - data_at);
    if ((type[0] & 0x0F) != 9) return 0;  /* not variable-length: nothing on the global heap */
    if (type_size < 16) return refuse(c, "attribute '%s' (object header at byte %llu): variable-length datatype truncated", name, h);
    unsigned base_class = type[8] & 0x0F;
    uint64_t base_size = le(type + 12, 4);
    if (stored != 16)
        return refuse(c, "attribute '%s' (object header at byte %llu): variable-length datatype of %llu bytes, not 16", name, h, (unsigned long long)stored);
    if (base_class == 6 || base_class == 9 || base_class == 10 || base_class > 10)
        return refuse(c, "attribute '%s' (object header at byte %llu): variable-length values of datatype class %u (not supported)", name, h, base_class);
    if (base_size == 0) return refuse(c, "attribute '%s' (object header at byte %llu): variable-length values of 0-byte elements", name, h);
    for (int64_t i = 0; i < count; i++) {
        const uint8_t *d = p + data_at + 16 * i;
        uint64_t length = le(d, 4), address = le(d + 4, 8);
        uint32_t index = (uint32_t)le(d + 12, 4);
        if (address == 0) continue;  /* a null value: libhdf5 reads nothing */
        uint64_t collection = offset_of(c, address);
        if (collection == UINT64_MAX || !is_collection(c, collection))
            return refuse(c, "attribute '%s' (object header at byte %llu): value %lld refers to a global heap at address %llu, where there is none",
                          name, h, (long long)i, (unsigned long long)address);
        const heap_object *o = index == 0 ? NULL : heap_object_at(c, collection, index);
        if (!o)
            return refuse(c, "attribute '%s' (object header at byte %llu): value %lld refers to object %u of the global heap at byte %llu, which does not exist",
                          name, h, (long long)i, index, (unsigned long long)collection);
        if (o->size != length * base_size)
            return refuse(c, "attribute '%s' (object header at byte %llu): value %lld declares %llu elements of %llu bytes, but its global heap object holds %llu bytes",
                          name, h, (long long)i, (unsigned long long)length, (unsigned long long)base_size, (unsigned long long)o->size);
    }
    return 0;
}

/* ---- groups ---- */

/* A link message (0x0006): queues a hard link's object header; refuses external and
 * user-defined links, which libhdf5 would follow out of this file. */
static int check_link(checker *c, const uint8_t *p, size_t size, uint64_t header) {
    unsigned long long h = (unsigned long long)header;
    if (size < 2 || p[0] != 1) return refuse(c, "object header at byte %llu: link message truncated or of unknown version", h);
    unsigned flags = p[1];
    size_t at = 2;
    unsigned type = 0;
    if (flags & 0x08) { if (at + 1 > size) goto truncated; type = p[at++]; }
    if (flags & 0x04) at += 8;
    if (flags & 0x10) at += 1;
    size_t width = (size_t)1 << (flags & 3);
    if (at + width > size) goto truncated;
    uint64_t name_length = le(p + at, (int)width);
    at += width;
    if (name_length > size - at) goto truncated;
    at += name_length;
    if (type == 0) {
        if (at + 8 > size) goto truncated;
        return visit(c, KIND_HEADER, le(p + at, 8), UNDEF_ADDR);
    }
    if (type == 1) return 0;  /* soft link: a path inside this file */
    return refuse(c, "object header at byte %llu: %s link (Braid does not follow links out of the file)", h,
                  type == 64 ? "external" : "user-defined");
truncated:
    return refuse(c, "object header at byte %llu: link message truncated", h);
}

/* The data block (file offset and size) of the local heap at `address`, which holds a
 * group's link names; refuses a heap that is not one or whose block is outside the file
 * (libhdf5 sizes its read of prefix and block from these fields without checking them). */
static int local_heap(checker *c, uint64_t address, uint64_t *data, uint64_t *size) {
    uint64_t at = offset_of(c, address);
    if (at == UINT64_MAX || !inside(c, at, 32) || memcmp(c->b + at, "HEAP", 4) != 0 || c->b[at + 4] != 0)
        return refuse(c, "group local heap at address %llu is missing or corrupt", (unsigned long long)address);
    *size = le(c->b + at + 8, 8);
    *data = offset_of(c, le(c->b + at + 24, 8));
    if (*data == UINT64_MAX || !inside(c, *data, *size))
        return refuse(c, "group local heap at address %llu declares a data block of %llu bytes outside the file",
                      (unsigned long long)address, (unsigned long long)*size);
    return 0;
}

/* A local heap's free list, walked as libhdf5 walks it when it loads the heap: every block
 * inside the data block, and no cycle (libhdf5 would follow it for ever). */
static int check_heap(checker *c, uint64_t address) {
    uint64_t data, size;
    if (local_heap(c, address, &data, &size) < 0) return -1;
    uint64_t block = le(c->b + offset_of(c, address) + 16, 8);
    for (uint64_t steps = 0; block != 1 /* the end of the list */; steps++) {
        if (steps > size / 16 || block > size || size - block < 16)
            return refuse(c, "group local heap at address %llu: free list runs outside its data block or in a cycle", (unsigned long long)address);
        uint64_t next = le(c->b + data + block, 8), length = le(c->b + data + block + 8, 8);
        if (next == 0 || length > size - block)
            return refuse(c, "group local heap at address %llu: free block at offset %llu is corrupt", (unsigned long long)address, (unsigned long long)block);
        block = next;
    }
    return spend(c, size / 16 * 16);
}

/* True when offset `name` of the heap's data block starts a NUL-terminated name inside it
 * (libhdf5 reads link names with strlen and strcmp). */
static int has_name(checker *c, uint64_t data, uint64_t size, uint64_t name) {
    if (name >= size) return 0;
    const uint8_t *end = memchr(c->b + data + name, 0, size - name);
    if (end && spend(c, (uint64_t)(end - (c->b + data + name))) < 0) return -1;
    return end != NULL;
}

/* A v1 B-tree node of a group's symbol table: queues its children. Its keys are offsets of
 * names in the group's local heap. */
static int check_btree(checker *c, uint64_t address, uint64_t heap) {
    uint64_t at = offset_of(c, address), data, size;
    if (at == UINT64_MAX || !inside(c, at, 24) || memcmp(c->b + at, "TREE", 4) != 0 || c->b[at + 4] != 0)
        return refuse(c, "group B-tree at address %llu is missing or not a group node", (unsigned long long)address);
    if (local_heap(c, heap, &data, &size) < 0) return -1;
    unsigned level = c->b[at + 5];
    uint64_t entries = le(c->b + at + 6, 2);
    /* keys and children alternate after the 24-byte header: key, child, key, ..., key */
    if (!inside(c, at + 24, entries * 16 + 8))
        return refuse(c, "group B-tree at address %llu runs past the end of the file", (unsigned long long)address);
    if (spend(c, 24 + entries * 16) < 0) return -1;
    for (uint64_t i = 0; i <= entries; i++) {
        int named = has_name(c, data, size, le(c->b + at + 24 + 16 * i, 8));
        if (named < 0) return -1;
        if (!named) return refuse(c, "group B-tree at address %llu: key %llu is not a name in the group's local heap", (unsigned long long)address, (unsigned long long)i);
        if (i < entries && visit(c, level > 0 ? KIND_BTREE : KIND_SNOD, le(c->b + at + 24 + 16 * i + 8, 8), heap) < 0) return -1;
    }
    return 0;
}

/* A symbol table node: queues the object header of every entry. */
static int check_snod(checker *c, uint64_t address, uint64_t heap) {
    uint64_t at = offset_of(c, address), data, size;
    if (at == UINT64_MAX || !inside(c, at, 8) || memcmp(c->b + at, "SNOD", 4) != 0)
        return refuse(c, "group symbol node at address %llu is missing or corrupt", (unsigned long long)address);
    if (local_heap(c, heap, &data, &size) < 0) return -1;
    uint64_t count = le(c->b + at + 6, 2);
    if (!inside(c, at + 8, count * 40))
        return refuse(c, "group symbol node at address %llu runs past the end of the file", (unsigned long long)address);
    if (spend(c, 8 + count * 40) < 0) return -1;
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *entry = c->b + at + 8 + 40 * i;
        int named = has_name(c, data, size, le(entry, 8));
        if (named < 0) return -1;
        if (!named) return refuse(c, "group symbol node at address %llu: entry %llu's name is not in the group's local heap", (unsigned long long)address, (unsigned long long)i);
        uint64_t cache = le(entry + 16, 4);
        if (cache == 2) {
            /* A soft link: no object header, its target path is a name in the same heap. */
            named = has_name(c, data, size, le(entry + 24, 4));
            if (named < 0) return -1;
            if (!named) return refuse(c, "group symbol node at address %llu: soft link %llu's target is not in the group's local heap", (unsigned long long)address, (unsigned long long)i);
            continue;
        }
        if (cache > 2) return refuse(c, "group symbol node at address %llu: entry %llu has unknown cache type %llu", (unsigned long long)address, (unsigned long long)i, (unsigned long long)cache);
        if (visit(c, KIND_HEADER, le(entry + 8, 8), UNDEF_ADDR) < 0) return -1;
    }
    return 0;
}

/* ---- object headers ---- */

/* Checks the messages in [from, to) of the object header at `header`; continuation
 * messages add chunks to `chunks` (pairs of file offset and length, `*nchunks` used). */
static int check_messages(checker *c, uint64_t from, uint64_t to, int v2, int creation_order, uint64_t header,
                          uint64_t **chunks, size_t *nchunks, size_t *chunks_cap) {
    unsigned long long h = (unsigned long long)header;
    size_t prefix = v2 ? 4 + (creation_order ? 2 : 0) : 8;
    uint64_t p = from;
    if (spend(c, to - from + 16) < 0) return -1;
    while (p + prefix <= to) {
        const uint8_t *m = c->b + p;
        unsigned type = v2 ? m[0] : (unsigned)le(m, 2);
        size_t size = v2 ? le(m + 1, 2) : le(m + 2, 2);
        unsigned flags = v2 ? m[3] : m[4];
        const uint8_t *body = m + prefix;
        if (size > to - p - prefix) return refuse(c, "object header at byte %llu: message at byte %llu runs past its chunk", h, (unsigned long long)p);
        int status = 0;
        switch (type) {
        case 0x0C: status = check_attribute(c, body, size, flags, header); break;
        case 0x06: status = check_link(c, body, size, header); break;
        case 0x10:  /* continuation */
            if (size < 16) return refuse(c, "object header at byte %llu: continuation message truncated", h);
            if (grow((void **)chunks, chunks_cap, *nchunks + 2, sizeof **chunks) < 0) return refuse(c, "out of memory while checking the file");
            (*chunks)[(*nchunks)++] = le(body, 8);
            (*chunks)[(*nchunks)++] = le(body + 8, 8);
            break;
        case 0x11:  /* symbol table: v1 B-tree and local heap */
            if (size < 16) return refuse(c, "object header at byte %llu: symbol table message truncated", h);
            status = visit(c, KIND_BTREE, le(body, 8), le(body + 8, 8));
            if (status == 0) status = visit(c, KIND_HEAP, le(body + 8, 8), UNDEF_ADDR);
            break;
        case 0x02:    /* link info */
        case 0x15: {  /* attribute info */
            if (size < 2) return refuse(c, "object header at byte %llu: link or attribute info truncated", h);
            size_t at = 2 + (type == 0x02 ? ((body[1] & 1) ? 8 : 0) : ((body[1] & 1) ? 2 : 0));
            if (at + 8 > size) return refuse(c, "object header at byte %llu: link or attribute info truncated", h);
            if (le(body + at, 8) != UNDEF_ADDR)
                return refuse(c, "object header at byte %llu: %s in dense (fractal heap) storage, which Braid cannot check (re-save the file with h5py's default libver)",
                              h, type == 0x02 ? "links" : "attributes");
            break;
        }
        default: break;
        }
        if (status < 0) return -1;
        p += prefix + size;
    }
    return 0;
}

static int check_header(checker *c, uint64_t address) {
    uint64_t at = offset_of(c, address);
    unsigned long long a = (unsigned long long)address;
    if (at == UINT64_MAX || !inside(c, at, 16)) return refuse(c, "object header at address %llu is outside the file", a);
    uint64_t *chunks = NULL;
    size_t nchunks = 0, cap = 0;
    int v2 = memcmp(c->b + at, "OHDR", 4) == 0, order = 0, status = 0;
    uint64_t from, to;
    if (v2) {
        unsigned flags = c->b[at + 5];
        size_t p = 6 + ((flags & 0x20) ? 16 : 0) + ((flags & 0x10) ? 4 : 0);
        size_t width = (size_t)1 << (flags & 3);
        if (c->b[at + 4] != 2 || !inside(c, at + p, width)) return refuse(c, "object header at address %llu is corrupt", a);
        uint64_t size = le(c->b + at + p, (int)width);
        order = (flags & 0x04) != 0;
        from = at + p + width;
        if (!inside(c, from, size)) return refuse(c, "object header at address %llu runs past the end of the file", a);
        to = from + size;
    } else {
        if (c->b[at] != 1) return refuse(c, "object header at address %llu is corrupt (version %u)", a, c->b[at]);
        uint64_t size = le(c->b + at + 8, 4);
        from = at + 16;
        if (!inside(c, from, size)) return refuse(c, "object header at address %llu runs past the end of the file", a);
        to = from + size;
    }
    status = check_messages(c, from, to, v2, order, at, &chunks, &nchunks, &cap);
    /* Continuation chunks; each may add more. A chunk address repeats only in a corrupt
     * file, so the number of chunks is bounded by the file's size. */
    for (size_t i = 0; status == 0 && i < nchunks; i += 2) {
        if (i / 2 > c->n / 16) { status = refuse(c, "object header at address %llu has too many continuation chunks", a); break; }
        uint64_t chunk = offset_of(c, chunks[i]), length = chunks[i + 1];
        if (chunk == UINT64_MAX || !inside(c, chunk, length) || (v2 && (length < 8 || memcmp(c->b + chunk, "OCHK", 4) != 0))) {
            status = refuse(c, "object header at address %llu: continuation chunk at address %llu is missing or corrupt", a, (unsigned long long)chunks[i]);
            break;
        }
        status = v2 ? check_messages(c, chunk + 4, chunk + length - 4, 1, order, at, &chunks, &nchunks, &cap)
                    : check_messages(c, chunk, chunk + length, 0, 0, at, &chunks, &nchunks, &cap);
    }
    free(chunks);
    return status;
}

/* ---- superblock and entry point ---- */

static int check_bytes(checker *c) {
    static const uint8_t signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    size_t super = SIZE_MAX;
    for (size_t at = 0; at + 8 <= c->n; at = at ? at * 2 : 512) {
        if (memcmp(c->b + at, signature, 8) == 0) { super = at; break; }
    }
    if (super == SIZE_MAX || !inside(c, super, 48)) return 0;  /* libhdf5 refuses it itself */
    c->base = super;
    const uint8_t *s = c->b + super;
    unsigned version = s[8];
    unsigned offsets = version < 2 ? s[13] : s[9], lengths = version < 2 ? s[14] : s[10];
    if (version > 3) return refuse(c, "HDF5 superblock version %u", version);
    if (offsets != 8 || lengths != 8)
        return refuse(c, "the HDF5 superblock declares %u-byte addresses and %u-byte lengths; Braid checks only files with 8-byte ones (what h5py and libhdf5 write)",
                      offsets, lengths);
    size_t root_at = version == 0 ? 64 : version == 1 ? 68 : 36;
    if (!inside(c, super + root_at, 8)) return refuse(c, "HDF5 superblock truncated");
    if (find_collections(c) < 0) return -1;
    if (visit(c, KIND_HEADER, le(s + root_at, 8), UNDEF_ADDR) < 0) return -1;
    while (c->ntodo > 0) {
        item next = c->todo[--c->ntodo];
        uint64_t address = next.key >> 2;
        int kind = (int)(next.key & 3);
        int status = kind == KIND_HEADER ? check_header(c, address)
                   : kind == KIND_BTREE ? check_btree(c, address, next.heap)
                   : kind == KIND_SNOD ? check_snod(c, address, next.heap) : check_heap(c, address);
        if (status < 0) return -1;
    }
    return 0;
}

int braid_h5_preflight(const char *path, char *message, size_t message_size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;  /* the caller's open reports it */
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 16) { close(fd); return 0; }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return 0;
    checker c = {.b = map, .n = (size_t)st.st_size, .message = message, .message_size = message_size,
                 .budget = 16 * (uint64_t)st.st_size + (1 << 20)};
    int status = check_bytes(&c);
    munmap(map, (size_t)st.st_size);
    free(c.objects);
    free(c.collections);
    free(c.todo);
    free(c.seen);
    return status;
}
