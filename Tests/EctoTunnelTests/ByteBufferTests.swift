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
