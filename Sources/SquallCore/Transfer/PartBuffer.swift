/// One part's bytes in memory: filled by the source stream, then lent to the request uploading it.
///
/// A transfer owns a fixed pool of these (parts in flight + 1), allocated once, so its memory is
/// bounded by the pool whatever the object's size. A buffer is used by one side at a time: the
/// source stream fills it, then hands it over (through an `AsyncStream`) to the uploader, which
/// gives it back to the pool once the part is stored. That hand-over is what makes the
/// `@unchecked Sendable` sound.
final class PartBuffer: @unchecked Sendable {
    let storage: UnsafeMutableRawBufferPointer
    /// Bytes filled so far.
    var count = 0

    init(capacity: Int) {
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(capacity, 1), alignment: 64)
    }

    deinit { storage.deallocate() }

    var capacity: Int { storage.count }
    var isFull: Bool { count == storage.count }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<count]) }

    /// Copies as much of `source` as fits and returns how many bytes it took.
    func append(_ source: UnsafeRawBufferPointer) -> Int {
        let taken = min(source.count, storage.count - count)
        guard taken > 0, let from = source.baseAddress else { return 0 }
        (storage.baseAddress! + count).copyMemory(from: from, byteCount: taken)
        count += taken
        return taken
    }
}
