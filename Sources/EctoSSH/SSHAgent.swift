import CLibSSH2

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
