#ifndef SQUALL_CCURL_SHIM_H
#define SQUALL_CCURL_SHIM_H
#include <curl/curl.h>

// curl_easy_setopt, curl_easy_getinfo and curl_multi_setopt are variadic and do not import into
// Swift: these typed wrappers are the only way Swift code calls them.

static inline CURLcode squall_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode squall_easy_setopt_off(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode squall_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode squall_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode squall_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode squall_easy_setopt_write_function(CURL *handle,
    size_t (*function)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, function);
}

static inline CURLcode squall_easy_setopt_read_function(CURL *handle,
    size_t (*function)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(handle, CURLOPT_READFUNCTION, function);
}

static inline CURLcode squall_easy_setopt_header_function(CURL *handle,
    size_t (*function)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, function);
}

static inline CURLcode squall_easy_setopt_xferinfo_function(CURL *handle,
    int (*function)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t)) {
    return curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, function);
}

static inline CURLcode squall_easy_setopt_opensocket_function(CURL *handle,
    curl_socket_t (*function)(void *, curlsocktype, struct curl_sockaddr *)) {
    return curl_easy_setopt(handle, CURLOPT_OPENSOCKETFUNCTION, function);
}

static inline CURLcode squall_easy_setopt_seek_function(CURL *handle,
    int (*function)(void *, curl_off_t, int)) {
    return curl_easy_setopt(handle, CURLOPT_SEEKFUNCTION, function);
}

static inline CURLcode squall_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode squall_easy_getinfo_off(CURL *handle, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode squall_easy_getinfo_double(CURL *handle, CURLINFO info, double *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode squall_easy_getinfo_string(CURL *handle, CURLINFO info, char **value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode squall_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLMcode squall_multi_setopt_long(CURLM *handle, CURLMoption option, long value) {
    return curl_multi_setopt(handle, option, value);
}

static inline CURLMcode squall_multi_setopt_pointer(CURLM *handle, CURLMoption option, void *value) {
    return curl_multi_setopt(handle, option, value);
}

static inline CURLMcode squall_multi_setopt_socket_function(CURLM *handle, curl_socket_callback function) {
    return curl_multi_setopt(handle, CURLMOPT_SOCKETFUNCTION, function);
}

static inline CURLMcode squall_multi_setopt_timer_function(CURLM *handle, curl_multi_timer_callback function) {
    return curl_multi_setopt(handle, CURLMOPT_TIMERFUNCTION, function);
}

// The socket a `curl_multi_socket_action` call names when libcurl's timer, not a socket, is due.
static const curl_socket_t squall_socket_timeout = CURL_SOCKET_TIMEOUT;

// The epoll set the multi interface's thread sleeps on (CurlMulti). `struct epoll_event` is packed
// on x86-64 and its flags are an enum of macros: these helpers take and give libcurl's own words.

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static inline int squall_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

static inline int squall_eventfd_create(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

// Watches `fd` for what a socket callback asked (CURL_POLL_IN, _OUT, _INOUT) or stops (_REMOVE).
// `known` says the set already holds it (one syscall, not a failed one first); a wrong guess (a
// number closed and opened again) is corrected with the other operation.
static inline int squall_epoll_watch(int epfd, int fd, int what, int known) {
    if (what == CURL_POLL_REMOVE) {
        return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL) == 0 || errno == ENOENT || errno == EBADF ? 0 : -1;
    }
    struct epoll_event event = {0};
    event.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    event.data.fd = fd;
    int first = known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(epfd, first, fd, &event) == 0) return 0;
    if (errno != (known ? ENOENT : EEXIST)) return -1;
    return epoll_ctl(epfd, known ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event);
}

// Adds the thread's wake-up eventfd to the set, for reading.
static inline int squall_epoll_add_reader(int epfd, int fd) {
    struct epoll_event event = {0};
    event.events = EPOLLIN;
    event.data.fd = fd;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event);
}

// Waits up to `timeout` ms; fills `fds` and `bits` (CURL_CSELECT_IN, _OUT) for up to 64 ready
// descriptors and returns how many, or -1 (errno EINTR is not an error: 0 is returned).
static inline int squall_epoll_wait(int epfd, int *fds, int *bits, int max, int timeout) {
    struct epoll_event events[64];
    if (max > 64) max = 64;
    int count = epoll_wait(epfd, events, max, timeout);
    if (count < 0) return errno == EINTR ? 0 : -1;
    for (int index = 0; index < count; index++) {
        uint32_t ready = events[index].events;
        fds[index] = events[index].data.fd;
        // An error or a hang-up reads as ready both ways, as libcurl's own poll loop takes them: the
        // read or write that follows tells it what happened.
        if (ready & (EPOLLERR | EPOLLHUP)) ready |= EPOLLIN | EPOLLOUT;
        bits[index] = (ready & EPOLLIN ? CURL_CSELECT_IN : 0) | (ready & EPOLLOUT ? CURL_CSELECT_OUT : 0);
    }
    return count;
}

// The wake-up counter: another thread adds one, the loop reads it back to zero.
static inline void squall_eventfd_signal(int fd) {
    uint64_t one = 1;
    ssize_t written = write(fd, &one, sizeof one);
    (void)written;  // a full counter (never, at 2^64 - 1) still wakes the reader
}

static inline void squall_eventfd_drain(int fd) {
    uint64_t count;
    ssize_t got = read(fd, &count, sizeof count);
    (void)got;  // non-blocking: nothing to read is fine
}

#endif
