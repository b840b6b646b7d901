import EctoConfig
import EctoPlatform
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// A listening error with a message fit for an operator (address, cause, holder of a busy port).
public struct ListenError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

enum Listener {
    /// Binds and listens on `endpoint` (non-blocking, close-on-exec).
    static func bind(_ endpoint: Endpoint) throws(ListenError) -> Int32 {
        let addresses: [sockaddr_storage]
        do {
            addresses = try SocketAddress.resolve(host: endpoint.host, port: endpoint.port, passive: true)
        } catch {
            throw ListenError(description: "cannot resolve \(endpoint.host): \(error.operation)")
        }
        guard var address = addresses.first else { throw ListenError(description: "no address for \(endpoint.host)") }
        let fd = socket(
            Int32(address.ss_family), Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw ListenError(description: String(cString: strerror(errno))) }
        Posix.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        if address.ss_family == sa_family_t(AF_INET6) { Posix.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
        let addressLength = SocketAddress.length(of: address)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, addressLength) }
        }
        if rc != 0 {
            let code = errno
            Glibc.close(fd)
            var message = String(cString: strerror(code))
            if code == EADDRINUSE {
                message = "address already in use"
                if let holder = PortHolder.find(port: endpoint.port, address: address) {
                    message += " (held by \(holder))"
                }
            }
            throw ListenError(description: message)
        }
        if listen(fd, 1024) != 0 {
            let code = errno
            Glibc.close(fd)
            throw ListenError(description: "listen: \(String(cString: strerror(code)))")
        }
        return fd
    }
}

extension Listener {
    /// The socket's local address if no interface has it any more (the network changed under
    /// it), else nil.
    static func localAddressIfGone(of fd: Int32) -> String? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { return nil }
        var interfaces: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&interfaces) == 0, let first = interfaces else { return nil }
        defer { freeifaddrs(first) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            cursor = entry.pointee.ifa_next
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == storage.ss_family else { continue }
            if storage.ss_family == sa_family_t(AF_INET) {
                let mine = withUnsafeBytes(of: &storage) { $0.load(fromByteOffset: 4, as: UInt32.self) }
                let theirs = UnsafeRawPointer(address).load(fromByteOffset: 4, as: UInt32.self)
                if mine == theirs { return nil }
            } else if storage.ss_family == sa_family_t(AF_INET6) {
                let mine = withUnsafeBytes(of: &storage) { Array($0[8..<24]) }
                let theirs = Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(address) + 8, count: 16))
                if mine == theirs { return nil }
            } else {
                return nil
            }
        }
        return Endpoint(storage).description
    }
}

/// Who holds a local port we could not bind, from /proc (only processes we may inspect): the
/// listening sockets in `/proc/net/tcp{,6}` whose address conflicts with ours (the same address,
/// or a wildcard), then the process with one of them among its descriptors. A socket on the same
/// port at another address (say [::1] when we wanted 127.0.0.1) is not the one in the way, and is
/// not named.
enum PortHolder {
    /// `address` as `/proc/net/tcp{,6}` prints it (each 32-bit word of the address as stored, in
    /// %08X), with the table it is in; nil for another family.
    static func procForm(of address: sockaddr_storage) -> (table: String, hex: String)? {
        var address = address
        func word(_ value: UInt32) -> String {
            let digits = String(value, radix: 16, uppercase: true)
            return String(repeating: "0", count: 8 - digits.count) + digits
        }
        switch Int32(address.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &address) { raw in
                let ipv4 = raw.load(as: sockaddr_in.self)
                return ("/proc/net/tcp", word(ipv4.sin_addr.s_addr))
            }
        case AF_INET6:
            return withUnsafeBytes(of: &address) { raw in
                let bytes = UnsafeRawBufferPointer(rebasing: raw[8..<24])  // sin6_addr
                let words = (0..<4).map { bytes.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self) }
                return ("/proc/net/tcp6", words.map(word).joined())
            }
        default:
            return nil
        }
    }

    /// The inodes of the listening sockets in one `/proc/net/tcp{,6}` table (`text`) on `port`
    /// whose address is `hex` or the wildcard (all zeros); any address when `hex` is nil.
    static func listeningInodes(in text: String, port: UInt16, address hex: String?) -> Set<String> {
        var inodes: Set<String> = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9, fields[3] == "0A" else { continue }  // 0A: LISTEN
            guard let colon = fields[1].lastIndex(of: ":"),
                UInt16(fields[1][fields[1].index(after: colon)...], radix: 16) == port
            else { continue }
            let address = fields[1][..<colon]
            if let hex, address != hex, address.contains(where: { $0 != "0" }) { continue }
            inodes.insert(String(fields[9]))
        }
        return inodes
    }

    static func find(port: UInt16, address: sockaddr_storage) -> String? {
        let ours = procForm(of: address)
        var inodes: Set<String> = []
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            if let ours {
                // The other family's table only holds a conflict as its wildcard: an IPv6
                // socket on [::] without IPV6_V6ONLY takes the IPv4 port too (ours are V6ONLY).
                let wildcardOnly = table != ours.table
                if wildcardOnly && ours.table == "/proc/net/tcp6" { continue }
                inodes.formUnion(
                    listeningInodes(
                        in: text, port: port, address: wildcardOnly ? String(repeating: "0", count: 32) : ours.hex))
            } else {
                inodes.formUnion(listeningInodes(in: text, port: port, address: nil))
            }
        }
        guard !inodes.isEmpty, let pids = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else {
            return nil
        }
        for pid in pids where pid.allSatisfy(\.isNumber) {
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
            for fd in fds {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                    target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast()))
                else { continue }
                let name =
                    (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
                    .trimmed() ?? "?"
                return "pid \(pid) (\(name))"
            }
        }
        return "another process"
    }
}
