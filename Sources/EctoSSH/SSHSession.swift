import CLibSSH2
import EctoHostKeys
#if canImport(Glibc)
import Glibc
#endif

/// One libssh2 session over a connected, non-blocking TCP socket.
///
/// Not `Sendable`: a libssh2 session and its channels must only be used by one thread. The owner
/// (a session driver thread) creates it, drives it with non-blocking calls, and frees it. Once
/// created, the session owns the socket and closes it after `libssh2_session_free`, so libssh2
/// can never write to a descriptor number that was closed and reused.
public final class SSHSession {
    let raw: OpaquePointer
    let transport: SSHTransport
    /// The connected TCP socket the session runs over.
    public let socket: Int32
    private var freed = false
    /// The signer of the public key authentication in progress (kept across `wouldBlock`).
    private var signContext: SignContext?
    private var signAbstract: UnsafeMutablePointer<UnsafeMutableRawPointer?>?

    /// Creates a non-blocking session on `socket` with our transport hooks installed. On success the
    /// session owns the socket; on failure the caller still does.
    public init(socket: Int32) throws(SSHError) {
        guard SSHLibrary.initialize() else {
            throw SSHError(code: 0, message: "libssh2_init failed", operation: "initialise libssh2")
        }
        let transport = SSHTransport()
        let abstract = Unmanaged.passUnretained(transport).toOpaque()
        guard let raw = ecto_session_init(abstract) else {
            throw SSHError(code: LIBSSH2_ERROR_ALLOC, message: "out of memory", operation: "create session")
        }
        self.raw = raw
        self.transport = transport
        self.socket = socket
        libssh2_session_set_blocking(raw, 0)
        ecto_session_set_transport(raw, ectoSendHook, ectoRecvHook)
        ecto_session_set_disconnect(raw, ectoDisconnectHook)
        // We write with MSG_NOSIGNAL in our hook; tell libssh2 not to fiddle with SIGPIPE itself.
        libssh2_session_flag(raw, LIBSSH2_FLAG_SIGPIPE, 1)
    }

    deinit {
        signAbstract?.deallocate()
        guard !freed else { return }
        // With no channels left and no pending send this completes at once; a dead socket makes
        // any send fail (not block), so the loop is bounded in practice.
        var attempts = 0
        while libssh2_session_free(raw) == LIBSSH2_ERROR_EAGAIN && attempts < 64 { attempts += 1 }
        freed = true
        Glibc.close(socket)
    }

    // MARK: Errors and readiness

    /// libssh2's last error on this session. With `code` (a call's own return code), the session's
    /// message is used only if it belongs to that code: some calls fail without recording one, and
    /// a stale message would mislead.
    public func lastError(_ operation: String, code: Int32? = nil) -> SSHError {
        var message: UnsafeMutablePointer<CChar>? = nil
        var length: Int32 = 0
        let recorded = libssh2_session_last_error(raw, &message, &length, 0)
        var text = message.map { String(cString: $0) } ?? ""
        if let code, code != recorded { text = "" }
        // An empty message is left empty: `SSHError.description` puts the code into words.
        return SSHError(code: code ?? recorded, message: text, operation: operation)
    }

    /// Which way the socket must become ready before the call that returned `wouldBlock` is retried.
    public var blockDirections: BlockDirections {
        BlockDirections(rawValue: libssh2_session_block_directions(raw))
    }

    /// Interprets a libssh2 status code: 0 (or positive) done, EAGAIN would block, otherwise throws.
    @inline(__always)
    func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(SSHError) -> SSHResult<Void> {
        if rc >= 0 { return .done(()) }
        if rc == LIBSSH2_ERROR_EAGAIN { return .wouldBlock }
        throw lastError(operation(), code: rc)
    }

    // MARK: Transport accounting

    /// Starts a new pass of the owner's event loop: the socket may have new bytes.
    public func beginPass() {
        transport.receiveDrained = false
        transport.receivedDuringPass = false
    }

    /// Bytes from the peer are waiting in the socket, not yet read: a sign of life all the same
    /// (the peer sent them), recorded as a receive for the dead-peer check without reading them.
    public func noteBytesWaiting() {
        transport.lastReceiveNanos = bootTimeNanos()
    }

    /// True when bytes arrived from the peer since `beginPass()`.
    public var receivedDuringPass: Bool { transport.receivedDuringPass }
    /// True when the socket was found empty since `beginPass()` (a receive returned EAGAIN): no
    /// more bytes enter libssh2 during this pass.
    public var receiveDrained: Bool { transport.receiveDrained }
    /// Bytes received on the SSH socket (as on the wire).
    public var bytesReceived: UInt64 { transport.bytesReceived }
    /// Bytes sent on the SSH socket (as on the wire).
    public var bytesSent: UInt64 { transport.bytesSent }
    /// CLOCK_BOOTTIME nanoseconds at which the last bytes arrived from the peer (0: never).
    public var lastReceiveBootNanos: UInt64 { transport.lastReceiveNanos }
    /// Nanoseconds since the last bytes arrived from the peer (0 if nothing ever arrived).
    public var nanosSinceLastReceive: UInt64 {
        let last = transport.lastReceiveNanos
        return last == 0 ? 0 : bootTimeNanos() &- last
    }

    // MARK: Handshake and host key

    /// Host key algorithms this libssh2 supports, in its own preference order.
    public var supportedHostKeyAlgorithms: [String] {
        var algorithms: UnsafeMutablePointer<UnsafePointer<CChar>?>? = nil
        let count = libssh2_session_supported_algs(raw, LIBSSH2_METHOD_HOSTKEY, &algorithms)
        guard count > 0, let algorithms else { return [] }
        defer { libssh2_free(raw, algorithms) }
        return (0..<Int(count)).compactMap { algorithms[$0].map { String(cString: $0) } }
    }

    /// Sets the host key algorithm preference (before the handshake), e.g. known algorithms first.
    public func preferHostKeyAlgorithms(_ algorithms: [String]) throws(SSHError) {
        guard !algorithms.isEmpty else { return }
        let rc = libssh2_session_method_pref(raw, LIBSSH2_METHOD_HOSTKEY, algorithms.joined(separator: ","))
        if rc < 0 { throw lastError("set host key algorithm preference") }
    }

    /// The SSH handshake: banner exchange, key exchange.
    public func handshake() throws(SSHError) -> SSHResult<Void> {
        try check(libssh2_session_handshake(raw, socket), "SSH handshake")
    }

    /// The server's host key after the handshake.
    public func hostKey() throws(SSHError) -> HostKey {
        var length = 0
        var type: Int32 = 0
        guard let pointer = libssh2_session_hostkey(raw, &length, &type), length > 0 else {
            throw SSHError(code: 0, message: "server sent no host key", operation: "read host key")
        }
        let bytes = pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
            Array(UnsafeBufferPointer(start: $0, count: length))
        }
        do {
            return try HostKey(blob: bytes)
        } catch {
            throw SSHError(code: 0, message: "malformed host key: \(error)", operation: "read host key")
        }
    }

    /// The negotiated method for `kind` (LIBSSH2_METHOD_*), e.g. the cipher, for logs and benchmarks.
    public func negotiatedMethod(_ kind: Int32) -> String? {
        libssh2_session_methods(raw, kind).map { String(cString: $0) }
    }

    /// Negotiated key exchange, host key, cipher and MAC (client to server).
    public var negotiatedSummary: String {
        let parts = [LIBSSH2_METHOD_KEX, LIBSSH2_METHOD_HOSTKEY, LIBSSH2_METHOD_CRYPT_CS, LIBSSH2_METHOD_MAC_CS]
        return parts.map { negotiatedMethod($0) ?? "?" }.joined(separator: " ")
    }

    // MARK: Authentication

    /// The authentication methods the server offers for `user`; `.done(nil)` when the server
    /// accepted "none" (no authentication needed).
    public func authenticationMethods(user: String) throws(SSHError) -> SSHResult<[String]?> {
        let list = user.withCString { libssh2_userauth_list(raw, $0, UInt32(strlen($0))) }
        if let list {
            return .done(String(cString: list).split(separator: ",").map(String.init))
        }
        if libssh2_userauth_authenticated(raw) != 0 { return .done(nil) }
        if libssh2_session_last_errno(raw) == LIBSSH2_ERROR_EAGAIN { return .wouldBlock }
        throw lastError("list authentication methods")
    }

    /// Set once the peer ended the connection: its SSH_MSG_DISCONNECT description ("" when it
    /// gave none), or "connection closed" when the socket reached its end. libssh2 1.10 reports
    /// a disconnect during public key authentication as a refusal (-19); this tells them apart.
    public var peerEnded: String? {
        if let message = transport.disconnectMessage { return message.isEmpty ? "disconnected" : message }
        return transport.peerClosed ? "connection closed" : nil
    }

    /// True once authentication succeeded.
    public var isAuthenticated: Bool { libssh2_userauth_authenticated(raw) != 0 }

    /// Public key authentication with a private key held in memory (OpenSSH or PEM format).
    /// The key and passphrase are never logged; the caller should wipe its copies.
    /// With `publicKey` (an OpenSSH public key or certificate line), that blob is sent as the key.
    public func authenticate(
        user: String, privateKey: [UInt8], passphrase: String?, publicKey: [UInt8]? = nil
    ) throws(SSHError)
        -> SSHResult<Void>
    {
        let rc: Int32 = privateKey.withUnsafeBufferPointer { key in
            user.withCString { userPointer in
                let keyPointer = UnsafeRawPointer(key.baseAddress!).assumingMemoryBound(to: CChar.self)
                func call(_ pass: UnsafePointer<CChar>?) -> Int32 {
                    guard let publicKey else {
                        return ecto_userauth_publickey_frommemory(
                            raw, userPointer, strlen(userPointer), keyPointer, key.count, pass)
                    }
                    return publicKey.withUnsafeBufferPointer { pub in
                        pub.baseAddress!.withMemoryRebound(to: CChar.self, capacity: pub.count) {
                            ecto_userauth_publickey_frommemory_with_public(
                                raw, userPointer, strlen(userPointer), $0, pub.count, keyPointer, key.count, pass)
                        }
                    }
                }
                if let passphrase { return passphrase.withCString { call($0) } }
                return call(nil)
            }
        }
        return try check(rc, "public key authentication")
    }

    /// Public key authentication with a key blob of our own and a signer we run
    /// (`libssh2_userauth_publickey`): libssh2 sends `publicKeyBlob` as the key, takes the
    /// algorithm name from its first string, asks the server whether it would accept the key
    /// (a refusal arrives before anything is signed), then calls `sign` with the data to sign and
    /// sends string(name) + string(signature). `sign` returns the raw signature in memory from
    /// `malloc` (libssh2 frees it), or a reason it could not sign. After `.wouldBlock`, call again
    /// with the same blob; the signer is kept until the attempt ends.
    public func authenticate(
        user: String, publicKeyBlob: [UInt8], sign: @escaping (UnsafeRawBufferPointer) -> SignatureResult
    ) throws(SSHError) -> SSHResult<Void> {
        if signContext == nil {
            let context = SignContext(sign: sign)
            signContext = context
            if signAbstract == nil { signAbstract = .allocate(capacity: 1) }
            signAbstract!.pointee = Unmanaged.passUnretained(context).toOpaque()
        }
        let context = signContext!
        let rc: Int32 = publicKeyBlob.withUnsafeBufferPointer { blob in
            signAbstract!.withMemoryRebound(to: UnsafeMutableRawPointer?.self, capacity: 1) { abstract in
                ecto_userauth_publickey_signed(raw, user, blob.baseAddress, blob.count, ectoSignCallback, abstract)
            }
        }
        if rc == LIBSSH2_ERROR_EAGAIN { return .wouldBlock }
        signContext = nil
        if rc >= 0 { return .done(()) }
        if let failure = context.failure {
            throw SSHError(code: rc, message: failure, operation: "sign for public key authentication")
        }
        throw lastError("public key authentication", code: rc)
    }

    // MARK: Channels

    /// Opens a `direct-tcpip` channel to `host:port` (as seen from the server), telling the
    /// server the connection comes from `originHost:originPort`. Only one open may be in flight per
    /// session: after `.wouldBlock`, call again with the same arguments before opening another.
    public func openDirectTCPIP(
        host: String, port: UInt16, originHost: String, originPort: UInt16,
        window: UInt32 = 2 * 1024 * 1024, packetSize: UInt32 = 32768
    ) throws(SSHError) -> SSHResult<SSHChannel> {
        // RFC 4254 7.2: string host, uint32 port, string originator address, uint32 originator port.
        // Built on the stack (one per new connection: no array, no allocation).
        var host = host
        var originHost = originHost
        let size = host.utf8.count + originHost.utf8.count + 16
        let type = "direct-tcpip"
        let channel: OpaquePointer? = withUnsafeTemporaryAllocation(byteCount: size, alignment: 1) { message in
            var offset = 0
            func put(_ value: UInt32) {
                message.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
                offset += 4
            }
            func put(_ text: inout String) {
                put(UInt32(text.utf8.count))
                text.withUTF8 { bytes in
                    UnsafeMutableRawBufferPointer(rebasing: message[offset...]).copyMemory(
                        from: UnsafeRawBufferPointer(bytes))
                }
                offset += text.utf8.count
            }
            put(&host)
            put(UInt32(port))
            put(&originHost)
            put(UInt32(originPort))
            return ecto_channel_open(
                raw, type, UInt32(type.utf8.count), window, packetSize,
                message.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(size))
        }
        if let channel { return .done(SSHChannel(raw: channel, session: self)) }
        if libssh2_session_last_errno(raw) == LIBSSH2_ERROR_EAGAIN { return .wouldBlock }
        throw lastError("open direct-tcpip channel to \(host):\(port)")
    }

    /// Makes libssh2 process every packet waiting on the socket when no channel exists to read
    /// through (libssh2 1.10 exports no other way): asks to open a channel of a type no server
    /// knows. The server answers with an open failure and allocates nothing; while waiting for it,
    /// libssh2 handles what came before (keepalive replies, the server's own keepalive requests,
    /// a disconnect). `.done` once the answer arrived; one open may be in flight per session.
    public func drainIncoming() throws(SSHError) -> SSHResult<Void> {
        let type = "drain@ecto-tunnel"
        let channel = ecto_channel_open(raw, type, UInt32(type.utf8.count), 32768, 32768, nil, 0)
        if let channel {
            // A server that accepted this type: close it again at once.
            _ = SSHChannel(raw: channel, session: self)
            return .done(())
        }
        let code = libssh2_session_last_errno(raw)
        if code == LIBSSH2_ERROR_EAGAIN { return .wouldBlock }
        if code == LIBSSH2_ERROR_CHANNEL_FAILURE { return .done(()) }
        throw lastError("drain incoming packets", code: code)
    }

    // MARK: Keepalive and teardown

    /// Enables keepalive messages asking for a reply (`keepalive@openssh.com`, want-reply) every `interval` seconds.
    public func configureKeepalive(intervalSeconds: Int) {
        libssh2_keepalive_config(raw, 1, UInt32(max(0, intervalSeconds)))
    }

    /// Sends a keepalive if one is due; returns the seconds until the next one is due.
    public func sendKeepalive() throws(SSHError) -> SSHResult<Int> {
        var next: Int32 = 0
        let rc = libssh2_keepalive_send(raw, &next)
        switch try check(rc, "send keepalive") {
        case .wouldBlock: return .wouldBlock
        case .done: return .done(Int(next))
        }
    }

    /// Sends SSH_MSG_DISCONNECT with `reason`.
    public func disconnect(reason: String) throws(SSHError) -> SSHResult<Void> {
        try check(ecto_session_disconnect(raw, reason), "disconnect")
    }

    /// Makes every further send and receive on the socket fail at once (shutdown both ways), so
    /// that tearing down a dead or unwanted session never waits on the peer.
    public func abandon() {
        _ = Glibc.shutdown(socket, Int32(SHUT_RDWR))
    }
}

/// What a signer gives libssh2: a signature in `malloc`ed memory, or why there is none.
public enum SignatureResult {
    case signature(UnsafeMutablePointer<UInt8>, count: Int)
    case failed(String)
}

/// The signer of one authentication attempt, reached from the C callback through `abstract`.
final class SignContext {
    let sign: (UnsafeRawBufferPointer) -> SignatureResult
    var failure: String?
    init(sign: @escaping (UnsafeRawBufferPointer) -> SignatureResult) { self.sign = sign }
}

private let ectoSignCallback: ecto_sign_fn = { _, signature, signatureLength, data, dataLength, abstract in
    guard let abstract, let opaque = abstract.pointee, let signature, let signatureLength else { return -1 }
    let context = Unmanaged<SignContext>.fromOpaque(opaque).takeUnretainedValue()
    switch context.sign(UnsafeRawBufferPointer(start: data, count: dataLength)) {
    case .signature(let pointer, let count):
        signature.pointee = pointer
        signatureLength.pointee = count
        return 0
    case .failed(let reason):
        context.failure = reason
        return -1
    }
}

extension SSHSession {
    /// The handshake for a short-lived caller that owns no event loop (the operator's host key
    /// fetch): the same non-blocking call the session drivers make, repeated after `poll` says the
    /// socket moved, until it completes. False when `deadline` passed first.
    public func handshake(until deadline: ContinuousClock.Instant) throws(SSHError) -> Bool {
        while true {
            beginPass()  // the transport hook answers EAGAIN until the next pass
            if case .done = try handshake() { return true }
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { return false }
            let milliseconds = Int32(
                clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
            var pfd = pollfd(fd: socket, events: Int16(POLLIN | POLLOUT), revents: 0)
            _ = poll(&pfd, 1, max(1, min(milliseconds, 100)))
        }
    }
}
