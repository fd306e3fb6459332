#ifndef SQUALL_CRABBITMQ_SHIM_H
#define SQUALL_CRABBITMQ_SHIM_H
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#include <string.h>

// amqp_login is variadic and amqp_literal_bytes/amqp_cstring_bytes-style helpers are macros or
// take C strings: these typed wrappers are how Swift code reaches them.

/// Logs in with the PLAIN mechanism; the variadic tail of amqp_login is the user and the password.
static inline amqp_rpc_reply_t squall_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
    int channel_max, int frame_max, int heartbeat, const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat, AMQP_SASL_METHOD_PLAIN, user, password);
}

/// A byte view of a NUL-terminated C string (amqp_cstring_bytes, named for Swift).
static inline amqp_bytes_t squall_amqp_bytes(const char *text) {
    return amqp_cstring_bytes(text);
}

/// An empty table, for arguments where none are passed.
static inline amqp_table_t squall_amqp_empty_table(void) {
    return amqp_empty_table;
}

static inline amqp_bytes_t squall_amqp_empty_bytes(void) {
    return amqp_empty_bytes;
}

#endif
