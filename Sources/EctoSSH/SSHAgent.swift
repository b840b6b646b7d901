import CLibSSH2
#if canImport(Glibc)
import Glibc
#endif

/// A connection to an ssh-agent for one session. Not `Sendable`: used on the session's thread.
public final class SSHAgent {
    let raw: OpaquePointer
    /// The session this agent authenticates (kept alive by the agent object).
    public let session: SSHSession
    private var connected = false
    private var identities: [UnsafeMutablePointer<libssh2_agent_publickey>] = []

    /// Prepares an agent client that will talk to the agent at `socketPath` (`SSH_AUTH_SOCK`).
    public init(session: SSHSession, socketPath: String) throws(SSHError) {
        guard let raw = libssh2_agent_init(session.raw) else {
            throw session.lastError("initialise ssh-agent client")
        }
        self.raw = raw
        self.session = session
        libssh2_agent_set_identity_path(raw, socketPath)
    }

    deinit {
        if connected { libssh2_agent_disconnect(raw) }
        libssh2_agent_free(raw)
    }

    /// Connects to the agent (a local Unix socket; blocking but immediate) and lists its keys.
    /// Returns each identity's comment, in the agent's order.
    public func connectAndListIdentities() throws(SSHError) -> [String] {
        if libssh2_agent_connect(raw) != 0 { throw session.lastError("connect to ssh-agent") }
        connected = true
        Self.markSocketsCloseOnExec()
        if libssh2_agent_list_identities(raw) != 0 { throw session.lastError("list ssh-agent identities") }
        identities = []
        var previous: UnsafeMutablePointer<libssh2_agent_publickey>? = nil
        var comments: [String] = []
        while true {
            var next: UnsafeMutablePointer<libssh2_agent_publickey>? = nil
            let rc = libssh2_agent_get_identity(raw, &next, previous)
            if rc != 0 { break }  // 1: end of list; < 0: error (treated as end)
            guard let next else { break }
            identities.append(next)
            comments.append(next.pointee.comment.map { String(cString: $0) } ?? "")
            previous = next
        }
        return comments
    }

    /// libssh2 1.10 creates the agent socket without `SOCK_CLOEXEC` (`socket(PF_UNIX, SOCK_STREAM,
    /// 0)` in agent.c) and does not expose it. Every fd of ours is created close-on-exec, so a
    /// socket without the flag is libssh2's (or one inherited at start): set the flag on it, so
    /// that no process started from the daemon (the Swift runtime's crash backtracer) inherits it.
    static func markSocketsCloseOnExec() {
        guard let directory = opendir("/proc/self/fd") else { return }
        defer { closedir(directory) }
        let own = dirfd(directory)
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let fd = Int32(name), fd > 2, fd != own else { continue }
            let flags = fcntl(fd, F_GETFD)
            guard flags >= 0, flags & FD_CLOEXEC == 0 else { continue }
            var info = stat()
            guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { continue }
            _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC)
        }
    }

    /// The public key blob of identity `index` (for logging its fingerprint).
    public func identityBlob(_ index: Int) -> [UInt8] {
        let identity = identities[index].pointee
        guard let blob = identity.blob else { return [] }
        return Array(UnsafeBufferPointer(start: blob, count: identity.blob_len))
    }

    /// Tries identity `index` for `user`.
    public func authenticate(user: String, identity index: Int) throws(SSHError) -> SSHResult<Void> {
        let rc = libssh2_agent_userauth(raw, user, identities[index])
        return try session.check(rc, "ssh-agent authentication")
    }
}
