import EctoConfig
import Glibc
import Testing

@testable import EctoTunnel

/// Naming who holds a busy local port: only sockets whose address conflicts with ours count.
@Suite struct PortHolderTests {
    /// Lines as `/proc/net/tcp` prints them (sl, local, remote, state, queues, …, uid, timeout, inode).
    static let table = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0
           1: 0200007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0
           2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3333 1 0
           3: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0
           4: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 5555 1 0
        """

    @Test func onlyOurAddressAndTheWildcardConflict() {
        // 127.0.0.1:8080 conflicts with 127.0.0.1:8080 and 0.0.0.0:8080, not with 127.0.0.2:8080,
        // another port, or an established connection from that port.
        #expect(PortHolder.listeningInodes(in: Self.table, port: 0x1F90, address: "0100007F") == ["1111", "3333"])
        #expect(PortHolder.listeningInodes(in: Self.table, port: 0x1F90, address: nil) == ["1111", "2222", "3333"])
        #expect(PortHolder.listeningInodes(in: Self.table, port: 0x1F92, address: "0100007F") == [])
    }

    @Test func addressesInProcForm() throws {
        let v4 = try #require(try SocketAddress.resolve(host: "127.0.0.1", port: 80).first)
        let ipv4 = try #require(PortHolder.procForm(of: v4))
        #expect(ipv4.table == "/proc/net/tcp" && ipv4.hex == "0100007F")
        let v6 = try #require(try SocketAddress.resolve(host: "::1", port: 80).first)
        let ipv6 = try #require(PortHolder.procForm(of: v6))
        #expect(ipv6.table == "/proc/net/tcp6" && ipv6.hex == "00000000000000000000000001000000")
    }

    /// The real tables: a socket of ours listening on 127.0.0.1 is found, under its address.
    @Test func findsOurOwnListener() throws {
        let fd = try Listener.bind(Endpoint(host: "127.0.0.1", port: 0))
        defer { close(fd) }
        var local = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        #expect(named == 0)
        let holder = PortHolder.find(port: Endpoint(local).port, address: local)
        #expect(holder == "pid \(getpid()) (\(Self.comm()))", "\(holder ?? "nil")")
    }

    static func comm() -> String {
        guard let file = fopen("/proc/self/comm", "r") else { return "?" }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 64)
        guard fgets(&buffer, 64, file) != nil else { return "?" }
        return String(cString: buffer).split(separator: "\n").first.map(String.init) ?? "?"
    }
}
