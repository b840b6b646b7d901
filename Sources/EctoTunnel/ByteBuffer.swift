/// A bounded byte queue for one direction of one forwarded connection. Its memory is allocated
/// when data first has to wait and released when its source has nothing more to give (a fill
/// that finds the buffer empty and reads nothing), or by `release()`: idle connections cost no
/// buffer memory, a busy one keeps the same memory from chunk to chunk (no malloc/free per chunk),
/// and a slow reader can never make it grow past `capacity`.
///
/// A first arrival smaller than `smallSize` (a request, a reply, most of a short connection's
/// traffic) gets a `smallSize` block, grown to `capacity` only if more comes before it drains.
/// A whole `capacity` per short connection cost glibc's heap trimming: freeing it at the top of
/// a thread's arena ran `madvise(MADV_DONTNEED)` for one connection in six under churn
/// (`strace -c`, `bench/run.py --strace-dir`), and the pages it dropped faulted in again.
struct ByteBuffer: ~Copyable {
    let capacity: Int
    /// The block a small first arrival gets.
    static let smallSize = 4096
    private var storage: UnsafeMutableRawPointer? = nil
    /// Bytes `storage` holds room for: `smallSize` or `capacity`.
    private var allocated = 0
    private var head = 0
    private var tail = 0

    init(capacity: Int) { self.capacity = capacity }

    deinit { storage?.deallocate() }

    var isEmpty: Bool { head == tail }
    /// Whether it holds memory right now.
    var isAllocated: Bool { storage != nil }
    /// Bytes of memory held (0, `smallSize` or `capacity`).
    var allocatedBytes: Int { allocated }
    var count: Int { tail - head }
    /// Room at the end for more data (the buffer is compacted when it drains, not on every read).
    var hasSpace: Bool { tail < capacity }

    /// Lets `body` fill the free space at the end; `body` returns how many bytes it wrote.
    mutating func fill<E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> Int) throws(E) -> Int {
        if storage == nil {
            storage = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
            allocated = capacity
        }
        if head > 0 && head == tail {
            head = 0
            tail = 0
        }
        if tail == allocated && allocated < capacity { grow() }
        let written = try body(UnsafeMutableRawBufferPointer(start: storage! + tail, count: allocated - tail))
        tail += written
        if isEmpty { release() }
        return written
    }

    /// Like `fill`, for a source that is often empty (an idle channel is read on every pass): while
    /// no memory is held, `body` first gets a small buffer on the stack, and memory is allocated
    /// only when bytes actually arrive (they are copied in, and the rest goes straight into it).
    /// Asking an idle source costs no malloc/free.
    mutating func fillAllocatingOnData<E: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(E) -> Int
    ) throws(E) -> Int {
        if storage != nil { return try fill(body) }
        let probeSize = min(capacity, 4096)
        let result: Result<Int, E> = withUnsafeTemporaryAllocation(byteCount: probeSize, alignment: 16) { probe in
            do throws(E) {
                let written = try body(probe)
                if written > 0 {
                    // A source that filled the probe probably has more: the whole capacity.
                    let size = written < probeSize ? min(capacity, Self.smallSize) : capacity
                    let memory = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
                    memory.copyMemory(from: probe.baseAddress!, byteCount: written)
                    storage = memory
                    allocated = size
                    head = 0
                    tail = written
                }
                return .success(written)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Lets `body` consume from the readable bytes; `body` returns how many it consumed. Emptying
    /// the buffer keeps its memory for the next fill (see `releaseIfEmpty()`).
    mutating func drain<E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> Int) throws(E) -> Int {
        guard let storage, head < tail else { return 0 }
        let consumed = try body(UnsafeRawBufferPointer(start: storage + head, count: tail - head))
        head += consumed
        if head == tail {
            head = 0
            tail = 0
        }
        return consumed
    }

    /// Frees the memory if no data waits (a connection whose source went quiet).
    mutating func releaseIfEmpty() {
        if head == tail { release() }
    }

    /// Frees the memory (dropping any data).
    mutating func release() {
        storage?.deallocate()
        storage = nil
        allocated = 0
        head = 0
        tail = 0
    }

    /// A small block ran full with the data still waiting: move it to a block of `capacity`.
    private mutating func grow() {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        memory.copyMemory(from: storage! + head, byteCount: tail - head)
        storage!.deallocate()
        storage = memory
        allocated = capacity
        tail -= head
        head = 0
    }
}
