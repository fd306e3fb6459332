#ifndef SQUALL_CCHECKSUM_SHIM_H
#define SQUALL_CCHECKSUM_SHIM_H
// CRC32C (Castagnoli), the per-part checksum Squall sends S3 (`x-amz-checksum-crc32c`). No system
// library offers it on Debian bookworm, and Swift cannot reach the processor's CRC32 instruction
// (SSE 4.2 on x86-64, the CRC extension on arm64), which makes it about ten times cheaper than the
// SHA-256 it replaces: so it is a few lines here. Checked against RFC 3720's test vectors
// (Tests/SquallCoreTests/PartChecksumTests.swift).
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

// One byte at a time, the reflected polynomial 0x82F63B78: the fallback, and the tail of the fast paths.
static inline uint32_t squall_crc32c_bytes(uint32_t crc, const uint8_t *bytes, size_t count) {
    for (size_t i = 0; i < count; i++) {
        crc ^= bytes[i];
        for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return crc;
}

// The compiler's builtins rather than <nmmintrin.h>: its inline wrappers are not emitted for Swift.
#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static inline uint32_t squall_crc32c_sse42(
    uint32_t crc, const uint8_t *bytes, size_t count) {
    uint64_t value = crc;
    for (; count >= 8; count -= 8, bytes += 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        value = __builtin_ia32_crc32di(value, word);
    }
    uint32_t rest = (uint32_t)value;
    for (; count > 0; count--, bytes++) rest = __builtin_ia32_crc32qi(rest, *bytes);
    return rest;
}

static inline int squall_cpu_has_sse42(void) {
    unsigned int eax, ebx, ecx, edx;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_SSE4_2) != 0;
}
#endif

/// Continues `crc` (0 for a fresh checksum) over `count` bytes: CRC32C of the bytes so far and these.
static inline uint32_t squall_crc32c_update(uint32_t crc, const void *data, size_t count) {
    const uint8_t *bytes = (const uint8_t *)data;
    crc = ~crc;
#if defined(__x86_64__)
    static int fast = -1;  // every thread that races here stores the same answer
    int has = __atomic_load_n(&fast, __ATOMIC_RELAXED);
    if (has < 0) {
        has = squall_cpu_has_sse42();
        __atomic_store_n(&fast, has, __ATOMIC_RELAXED);
    }
    crc = has ? squall_crc32c_sse42(crc, bytes, count) : squall_crc32c_bytes(crc, bytes, count);
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
    for (; count >= 8; count -= 8, bytes += 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        crc = __builtin_arm_crc32cd(crc, word);
    }
    crc = squall_crc32c_bytes(crc, bytes, count);
#else
    crc = squall_crc32c_bytes(crc, bytes, count);
#endif
    return ~crc;
}

#endif
