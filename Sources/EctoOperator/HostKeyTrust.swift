import EctoConfig
import EctoHostKeys
import EctoPlatform
import EctoSSH
import EctoTunnel
#if canImport(Glibc)
import Glibc
#endif

/// Step 3 of `ecto-tunnel connect`: read the server's host key and decide about it with the
/// daemon's own policy (`HostKeyVerifier`), so connect never records a key the daemon would then
/// refuse (a key of a type known_hosts does not have for the host is refused by both).
public enum HostKeyTrust {
    /// The host key could not be read.
    public struct FetchFailure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The decision for `key`: connect records new keys only after the operator confirmed them, so
    /// it decides as accept-new (an unknown host is `recordNew`), never with a pin.
    public static func decide(
        key: HostKey, host: String, port: UInt16, knownHosts: KnownHostsFile
    ) -> HostKeyVerifier.Decision {
        HostKeyVerifier.decide(
            key: key, host: host, port: Int(port), pin: nil, policy: .acceptNew, knownHosts: knownHosts)
    }

    /// Reads `host`:`port`'s host key: TCP connect, the SSH handshake (asking for the key types
    /// known_hosts has for the host first, as the session drivers do), no authentication.
    public static func fetch(
        host: String, port: UInt16, knownHosts: KnownHostsFile, timeout: Duration
    ) throws(FetchFailure) -> HostKey {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else {
            throw FetchFailure(description: "cannot resolve \(host)")
        }
        defer { freeaddrinfo(first) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FetchFailure(description: String(cString: strerror(errno))) }
        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let message = String(cString: strerror(errno))
            Syscall.close(fd)
            throw FetchFailure(description: message)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let session: SSHSession
        do {
            session = try SSHSession(socket: fd)  // owns and closes fd from here
        } catch {
            Syscall.close(fd)
            throw FetchFailure(description: error.description)
        }
        if let order = HostKeyVerifier.algorithmPreference(
            host: host, port: Int(port), pin: nil, knownHosts: knownHosts, supported: session.supportedHostKeyAlgorithms
        ) {
            try? session.preferHostKeyAlgorithms(order)
        }
        do {
            guard try session.handshake(until: ContinuousClock.now.advanced(by: timeout)) else {
                throw FetchFailure(description: "no SSH handshake within \(timeout)")
            }
            let key = try session.hostKey()
            _ = try? session.disconnect(reason: "host key read by ecto-tunnel connect")
            return key
        } catch let failure as FetchFailure {
            throw failure
        } catch {
            throw FetchFailure(description: "\(error)")
        }
    }
}
