#include "braid_data_shim.h"

#include <hdf5.h>
#include <stdio.h>

static hid_t open_dataset(const char *path, const char *name, hid_t *file,
                          char *message, size_t message_size) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (braid_h5_preflight(path, message, message_size) != 0) return -1;
    *file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*file < 0) {
        snprintf(message, message_size, "cannot open as HDF5");
        return -1;
    }
    hid_t set = H5Lexists(*file, name, H5P_DEFAULT) > 0 ? H5Dopen2(*file, name, H5P_DEFAULT) : -1;
    if (set < 0) {
        snprintf(message, message_size, "no dataset named '%s'", name);
        H5Fclose(*file);
    }
    return set;
}

/* Nonzero (with a message) unless the dataset's declared size is backed by bytes in the
 * file: stored in full, or within deflate's 1032:1 ratio when filtered. Callers allocate
 * from the shape, so a few bytes must not be able to declare gigabytes. */
static int unbacked(hid_t file, hid_t set, int rank, const hsize_t *dims, const char *name,
                    char *message, size_t message_size) {
    unsigned long long count = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] != 0 && count > (1ULL << 40) / dims[i]) {
            snprintf(message, message_size, "dataset '%s' declares more than 2^40 elements", name);
            return 1;
        }
        count *= dims[i];
    }
    if (count == 0) return 0;
    hid_t type = H5Dget_type(set);
    size_t width = type >= 0 ? H5Tget_size(type) : 0;
    if (type >= 0) H5Tclose(type);
    unsigned long long raw = count * (width ? width : 1);
    unsigned long long stored = H5Dget_storage_size(set);
    hsize_t file_size = 0;
    H5Fget_filesize(file, &file_size);
    hid_t plist = H5Dget_create_plist(set);
    int filters = plist >= 0 ? H5Pget_nfilters(plist) : 0;
    if (plist >= 0) H5Pclose(plist);
    int ok = stored <= file_size && (filters > 0 ? raw / 1032 <= stored : stored >= raw);
    if (!ok) {
        snprintf(message, message_size,
                 "dataset '%s' needs %llu bytes but the file stores %llu for it (truncated or corrupt)",
                 name, raw, stored);
        return 1;
    }
    return 0;
}

/* open_dataset, and the dataset's dataspace in *space when it opened. */
static hid_t open_dataset_space(const char *path, const char *name, hid_t *file, hid_t *space,
                                char *message, size_t message_size) {
    hid_t set = open_dataset(path, name, file, message, message_size);
    if (set >= 0) *space = H5Dget_space(set);
    return set;
}

int braid_h5_dataset_shape(const char *path, const char *name, int *rank, int64_t *dims,
                           char *message, size_t message_size) {
    hid_t file, space;
    hid_t set = open_dataset_space(path, name, &file, &space, message, message_size);
    if (set < 0) return -1;
    int n = H5Sget_simple_extent_ndims(space);
    int status = 0;
    if (n < 0 || n > 8) {
        snprintf(message, message_size, "dataset '%s' has unsupported rank %d", name, n);
        status = -1;
    } else {
        hsize_t d[8];
        H5Sget_simple_extent_dims(space, d, NULL);
        if (unbacked(file, set, n, d, name, message, message_size)) {
            status = -1;
        } else {
            for (int i = 0; i < n; i++) dims[i] = (int64_t)d[i];
            *rank = n;
        }
    }
    H5Sclose(space);
    H5Dclose(set);
    H5Fclose(file);
    return status;
}

int braid_h5_read(const char *path, const char *name, int as_int, void *out, size_t count,
                  char *message, size_t message_size) {
    hid_t file, space;
    hid_t set = open_dataset_space(path, name, &file, &space, message, message_size);
    if (set < 0) return -1;
    hssize_t points = H5Sget_simple_extent_npoints(space);
    H5Sclose(space);
    int status = 0;
    if (points < 0 || (size_t)points != count) {
        snprintf(message, message_size, "dataset '%s' holds %lld elements, expected %zu",
                 name, (long long)points, count);
        status = -1;
    } else {
        hid_t type = as_int ? H5T_NATIVE_LLONG : H5T_NATIVE_FLOAT;
        if (H5Dread(set, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
            snprintf(message, message_size, "dataset '%s' cannot be read as %s", name,
                     as_int ? "integers" : "numbers");
            status = -1;
        }
    }
    H5Dclose(set);
    H5Fclose(file);
    return status;
}
