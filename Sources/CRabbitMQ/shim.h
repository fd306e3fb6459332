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

/// A table entry holding a long string (queue arguments such as x-queue-type); the key and value
/// must outlive the table's use.
static inline amqp_table_entry_t squall_amqp_entry_string(const char *key, const char *value) {
    amqp_table_entry_t entry;
    memset(&entry, 0, sizeof(entry));
    entry.key = amqp_cstring_bytes(key);
    entry.value.kind = AMQP_FIELD_KIND_UTF8;
    entry.value.value.bytes = amqp_cstring_bytes(value);
    return entry;
}

/// A table entry holding a signed 64-bit integer (x-delivery-limit, x-max-length).
static inline amqp_table_entry_t squall_amqp_entry_long(const char *key, int64_t value) {
    amqp_table_entry_t entry;
    memset(&entry, 0, sizeof(entry));
    entry.key = amqp_cstring_bytes(key);
    entry.value.kind = AMQP_FIELD_KIND_I64;
    entry.value.value.i64 = value;
    return entry;
}

/// A table over `count` entries owned by the caller.
static inline amqp_table_t squall_amqp_table(amqp_table_entry_t *entries, int count) {
    amqp_table_t table;
    table.num_entries = count;
    table.entries = entries;
    return table;
}

/// The integer in a header value, whatever integer width the broker chose; returns 0 when the
/// value is not an integer and sets *found to 0.
static inline int64_t squall_amqp_field_integer(const amqp_field_value_t *value, int *found) {
    *found = 1;
    switch (value->kind) {
    case AMQP_FIELD_KIND_I8: return value->value.i8;
    case AMQP_FIELD_KIND_U8: return value->value.u8;
    case AMQP_FIELD_KIND_I16: return value->value.i16;
    case AMQP_FIELD_KIND_U16: return value->value.u16;
    case AMQP_FIELD_KIND_I32: return value->value.i32;
    case AMQP_FIELD_KIND_U32: return value->value.u32;
    case AMQP_FIELD_KIND_I64: return value->value.i64;
    case AMQP_FIELD_KIND_U64: return (int64_t)value->value.u64;
    default: *found = 0; return 0;
    }
}

/// Sends one heartbeat frame on channel 0.
static inline int squall_amqp_send_heartbeat(amqp_connection_state_t state) {
    amqp_frame_t frame;
    memset(&frame, 0, sizeof(frame));
    frame.frame_type = AMQP_FRAME_HEARTBEAT;
    frame.channel = 0;
    return amqp_send_frame(state, &frame);
}

/// Answers the broker's channel.close so the channel number can be opened again.
static inline int squall_amqp_send_channel_close_ok(amqp_connection_state_t state, amqp_channel_t channel) {
    amqp_channel_close_ok_t ok;
    memset(&ok, 0, sizeof(ok));
    return amqp_send_method(state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
}

/// Answers the broker's connection.close before the socket is dropped.
static inline int squall_amqp_send_connection_close_ok(amqp_connection_state_t state) {
    amqp_connection_close_ok_t ok;
    memset(&ok, 0, sizeof(ok));
    return amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
}

/// The method id of a frame, or 0 when it is not a method frame.
static inline amqp_method_number_t squall_amqp_frame_method(const amqp_frame_t *frame) {
    return frame->frame_type == AMQP_FRAME_METHOD ? frame->payload.method.id : 0;
}

/// The decoded method fields of a method frame.
static inline void *squall_amqp_frame_decoded(const amqp_frame_t *frame) {
    return frame->payload.method.decoded;
}

/// Whether an RPC reply is a normal reply.
static inline int squall_amqp_reply_ok(amqp_rpc_reply_t reply) {
    return reply.reply_type == AMQP_RESPONSE_NORMAL;
}

#endif
