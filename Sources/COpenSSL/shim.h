#ifndef SQUALL_COPENSSL_SHIM_H
#define SQUALL_COPENSSL_SHIM_H
// OpenSSL's SHA-256, for one reason: its context is a plain struct whose state after a whole
// number of 64-byte blocks can be saved and restored, so an upload resumed by another process can
// finish the whole-object digest without reading the bytes already uploaded (docs/transfer.md).
// OpenSSL 3 marks these functions deprecated in favour of EVP, whose state cannot be saved.
// And where OpenSSL's default CA bundle is (X509_get_default_cert_file), which the broker's TLS
// socket loads when no ?cacertfile= is given: rabbitmq-c 0.11 loads no trust anchors itself.
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/md5.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#endif
