// Open MPI's C API as Swift sees it. mpi.h names its handles (MPI_COMM_WORLD, MPI_FLOAT,
// MPI_SUM, ...) and sentinels (MPI_IN_PLACE, MPI_STATUS_IGNORE) with macros that cast the
// addresses of library globals, which Swift cannot import; these functions return them.
// Everything works on MPI_COMM_WORLD, the only communicator Braid uses.
#include <mpi.h>

static inline MPI_Comm braid_mpi_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype braid_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype braid_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype braid_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype braid_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Op braid_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op braid_mpi_max(void) { return MPI_MAX; }
static inline void *braid_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Request braid_mpi_request_null(void) { return MPI_REQUEST_NULL; }

/// Makes errors on MPI_COMM_WORLD return codes instead of aborting the job.
static inline int braid_mpi_errors_return(void) {
    return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

/// Tests a request without a status; `*done` is 1 when it completed.
static inline int braid_mpi_test(MPI_Request *request, int *done) {
    return MPI_Test(request, done, MPI_STATUS_IGNORE);
}

/// Checks once for a message with `tag` from any rank; `*found` is 1 when one is waiting, with
/// its source and byte count.
static inline int braid_mpi_iprobe(int tag, int *found, int *source, int *bytes) {
    MPI_Status status;
    int rc = MPI_Iprobe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, found, &status);
    if (rc != MPI_SUCCESS || !*found) return rc;
    *source = status.MPI_SOURCE;
    return MPI_Get_count(&status, MPI_BYTE, bytes);
}

/// Receives the message `braid_mpi_iprobe` found.
static inline int braid_mpi_recv_bytes(void *buffer, int bytes, int source, int tag) {
    return MPI_Recv(buffer, bytes, MPI_BYTE, source, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}
