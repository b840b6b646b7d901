import EctoPlatform
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Socket addresses from a lookup, on their way from a resolver thread to a driver.
///
/// `@unchecked Sendable`: `sockaddr_storage` is plain bytes without pointers; the array is handed
/// over once and never shared.
struct ResolvedAddresses: @unchecked Sendable {
    var addresses: [sockaddr_storage]
}

/// Name resolution off the driver's loop (swift-nio's GetaddrinfoResolver does the same): each
/// lookup runs `getaddrinfo` on a short-lived thread of its own and posts the answer to the
/// driver's inbox (`TunnelHandle.postResolution`), so a slow or hanging resolver never stalls the
/// driver's forwarding, keepalives, watchdog answers or status. The driver gives up on a lookup at
/// `connect_timeout` (a failed attempt) and ignores its late answer; a hung lookup ends its thread
/// when the resolver's own timeouts end it (resolv.conf `timeout` × `attempts`).
enum HostResolver {
    /// What resolves a name: `Posix`'s getaddrinfo, or a test's stand-in.
    typealias Function = @Sendable (_ host: String, _ port: UInt16) throws(SystemError) -> [sockaddr_storage]

    /// TEST ONLY: replaces getaddrinfo for every driver of this process (nil: the real one).
    static let testHook = Mutex<Function?>(nil)

    /// Starts a lookup of `host:port`; its answer reaches `handle` with `ticket`.
    static func start(host: String, port: UInt16, ticket: UInt64, handle: TunnelHandle) {
        let resolve = testHook.withLock { $0 }
        startThread(name: "resolve", stackSize: 256 * 1024) {
            let result: Result<ResolvedAddresses, SystemError>
            do throws(SystemError) {
                let addresses: [sockaddr_storage]
                if let resolve {
                    addresses = try resolve(host, port)
                } else {
                    addresses = try SocketAddress.resolve(host: host, port: port)
                }
                result = .success(ResolvedAddresses(addresses: addresses))
            } catch {
                result = .failure(error)
            }
            handle.postResolution(ticket: ticket, result)
        }
    }
}
