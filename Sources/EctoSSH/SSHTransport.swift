import CLibSSH2
#if canImport(Glibc)
import Glibc
#endif

/// Byte accounting and the receive shortcut for one session's socket. libssh2 calls our send and
/// receive hooks for every byte on the SSH socket, which gives us, without extra syscalls:
/// - when anything last arrived from the peer (dead-peer detection: libssh2 does not track
///   keepalive replies);
/// - whether the socket was found empty during the current pass of the event loop, so that
///   reading N channels costs one `recv` returning EAGAIN, not N.
///
/// Confined to the thread that owns the session (it is only touched from libssh2 calls made by
/// that thread), so it needs no locking.
final class SSHTransport {
    /// Bytes received from the peer on the SSH socket (encrypted, as on the wire).
    var bytesReceived: UInt64 = 0
    /// Bytes sent to the peer on the SSH socket.
    var bytesSent: UInt64 = 0
    /// `CLOCK_BOOTTIME` nanoseconds of the last successful receive (0: never).
    var lastReceiveNanos: UInt64 = 0
    /// Set when a `recv` returned EAGAIN; cleared by `SSHSession.beginPass()`.
    var receiveDrained = false
    /// Set when bytes arrived; cleared by `SSHSession.beginPass()`.
    var receivedDuringPass = false
    /// The peer's SSH_MSG_DISCONNECT description, once one arrived.
    var disconnectMessage: String?
    /// A receive found the end of the stream (or the connection reset).
    var peerClosed = false
}

/// libssh2 disconnect hook: keeps the peer's reason (e.g. "Too many authentication failures").
let ectoDisconnectHook: ecto_disconnect_fn = { _, _, message, length, _, _, abstract in
    guard let state = transport(abstract) else { return }
    if let message, length > 0 {
        state.disconnectMessage = message.withMemoryRebound(to: UInt8.self, capacity: Int(length)) {
            String(decoding: UnsafeBufferPointer(start: $0, count: Int(length)), as: UTF8.self)
        }
    } else {
        state.disconnectMessage = ""
    }
}

/// CLOCK_BOOTTIME in nanoseconds: monotonic, and it keeps counting across suspend. The clock of
/// `SSHSession.lastReceiveBootNanos`, for callers that compare against it.
@inline(__always)
public func bootTimeNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_BOOTTIME, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

@inline(__always)
private func transport(_ abstract: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> SSHTransport? {
    guard let raw = abstract?.pointee else { return nil }
    return Unmanaged<SSHTransport>.fromOpaque(raw).takeUnretainedValue()
}

/// libssh2 send hook: returns bytes sent or -errno, as libssh2's own does.
let ectoSendHook: ecto_send_fn = { fd, buffer, length, flags, abstract in
    let sent = send(fd, buffer, length, flags | Int32(MSG_NOSIGNAL))
    if sent < 0 { return -ssize_t(errno) }
    if let state = transport(abstract) { state.bytesSent &+= UInt64(sent) }
    return sent
}

/// libssh2 receive hook: returns bytes read, 0 at EOF, or -errno. Once the socket has been found
/// empty in a pass, answers EAGAIN without a syscall until the next pass.
let ectoRecvHook: ecto_recv_fn = { fd, buffer, length, flags, abstract in
    let state = transport(abstract)
    if let state, state.receiveDrained { return -ssize_t(EAGAIN) }
    let received = recv(fd, buffer, length, flags)
    if received < 0 {
        let code = errno
        if code == EAGAIN || code == EWOULDBLOCK { state?.receiveDrained = true }
        if code == ECONNRESET { state?.peerClosed = true }
        return -ssize_t(code)
    }
    if received == 0 && length > 0 { state?.peerClosed = true }
    if received > 0, let state {
        state.bytesReceived &+= UInt64(received)
        state.lastReceiveNanos = bootTimeNanos()
        state.receivedDuringPass = true
    }
    return received
}
