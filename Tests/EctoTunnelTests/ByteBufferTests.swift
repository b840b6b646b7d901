import Testing

@testable import EctoTunnel

@Suite struct ByteBufferTests {
    @Test func boundedFillAndDrainInOrder() {
        var buffer = ByteBuffer(capacity: 8)
        #expect(buffer.isEmpty && buffer.hasSpace)
        let wrote = buffer.fill { space in
            for i in 0..<space.count { space[i] = UInt8(i) }
            return space.count
        }
        #expect(wrote == 8)
        #expect(!buffer.hasSpace && buffer.count == 8)
        // A full buffer offers no space: this is the backpressure.
        #expect(buffer.fill { $0.count } == 0)
        var out: [UInt8] = []
        _ = buffer.drain { bytes in
            out += bytes.prefix(3)
            return 3
        }
        _ = buffer.drain { bytes in
            out += bytes
            return bytes.count
        }
        #expect(out == Array(0..<8))
        #expect(buffer.isEmpty && buffer.hasSpace)
    }

    /// A small first arrival gets a small block; more data before it drains grows it to the
    /// capacity with every byte kept in order; a first arrival that fills the probe gets the
    /// capacity at once; nothing ever holds more than the capacity.
    @Test func smallArrivalsGetASmallBlockThatGrowsWhenMoreComes() {
        let capacity = 64 * 1024
        var buffer = ByteBuffer(capacity: capacity)
        var next: UInt8 = 0
        func give(_ count: Int) -> (UnsafeMutableRawBufferPointer) -> Int {
            { space in
                let n = min(count, space.count)
                for i in 0..<n {
                    space[i] = next
                    next &+= 1
                }
                return n
            }
        }
        #expect(buffer.fillAllocatingOnData(give(100)) == 100)
        #expect(buffer.allocatedBytes == ByteBuffer.smallSize)
        // Fill the small block up, then one more fill grows it.
        var total = 100
        while buffer.allocatedBytes == ByteBuffer.smallSize {
            let n = buffer.fillAllocatingOnData(give(1000))
            #expect(n > 0)
            total += n
        }
        #expect(buffer.allocatedBytes == capacity)
        #expect(total > ByteBuffer.smallSize)
        while buffer.hasSpace { total += buffer.fill(give(7000)) }
        #expect(total == capacity && buffer.count == capacity)
        var expected: UInt8 = 0
        var ordered = true
        _ = buffer.drain { bytes in
            for byte in bytes {
                if byte != expected { ordered = false }
                expected &+= 1
            }
            return bytes.count
        }
        #expect(ordered, "bytes kept in order across the growth")
        // Partly drained small block: growth moves only what waits.
        var partial = ByteBuffer(capacity: capacity)
        next = 0
        _ = partial.fillAllocatingOnData(give(3000))
        _ = partial.drain { _ in 1000 }
        _ = partial.fill(give(ByteBuffer.smallSize))  // fills the small block to its end
        #expect(partial.allocatedBytes == ByteBuffer.smallSize)
        _ = partial.fill(give(10))
        #expect(partial.allocatedBytes == capacity)
        var first: UInt8?
        _ = partial.drain { bytes in
            first = bytes.first
            return 0
        }
        #expect(first == UInt8(1000 % 256))
        #expect(partial.count == ByteBuffer.smallSize - 1000 + 10)
        // A source that fills the probe gets the whole capacity at once.
        var bulk = ByteBuffer(capacity: capacity)
        _ = bulk.fillAllocatingOnData(give(capacity))
        #expect(bulk.allocatedBytes == capacity)
    }

    @Test func partialDrainKeepsTheRest() {
        var buffer = ByteBuffer(capacity: 4)
        _ = buffer.fill { space in
            space.copyBytes(from: [1, 2, 3])
            return 3
        }
        _ = buffer.drain { _ in 1 }
        #expect(buffer.count == 2)
        var rest: [UInt8] = []
        _ = buffer.drain { bytes in
            rest = Array(bytes)
            return 0
        }
        #expect(rest == [2, 3])
        #expect(buffer.count == 2)
    }

    @Test func memoryIsKeptWhileBusyAndFreedWhenTheSourceIsQuiet() {
        var buffer = ByteBuffer(capacity: 4)
        _ = buffer.fill { space in
            space.copyBytes(from: [1, 2])
            return 2
        }
        _ = buffer.drain { $0.count }
        // Drained: the memory stays for the next chunk.
        var allocated = buffer.isAllocated
        #expect(buffer.isEmpty && allocated)
        // A fill that finds nothing gives it back.
        #expect(buffer.fill { _ in 0 } == 0)
        allocated = buffer.isAllocated
        #expect(!allocated)
        _ = buffer.fill { space in
            space.copyBytes(from: [7])
            return 1
        }
        buffer.releaseIfEmpty()
        allocated = buffer.isAllocated
        #expect(allocated && buffer.count == 1)
        _ = buffer.drain { $0.count }
        buffer.releaseIfEmpty()
        allocated = buffer.isAllocated
        #expect(!allocated)
    }

    @Test func askingAnEmptySourceAllocatesNothing() {
        var buffer = ByteBuffer(capacity: 16)
        #expect(buffer.fillAllocatingOnData { _ in 0 } == 0)
        var allocated = buffer.isAllocated
        #expect(!allocated)
        // Bytes that arrive through the small first buffer are kept, and later fills go straight in.
        #expect(
            buffer.fillAllocatingOnData { space in
                space.copyBytes(from: [1, 2, 3])
                return 3
            } == 3)
        allocated = buffer.isAllocated
        #expect(allocated && buffer.count == 3)
        #expect(
            buffer.fillAllocatingOnData { space in
                space.copyBytes(from: [4])
                return 1
            } == 1)
        var out: [UInt8] = []
        _ = buffer.drain { bytes in
            out = Array(bytes)
            return bytes.count
        }
        #expect(out == [1, 2, 3, 4])
    }
}
