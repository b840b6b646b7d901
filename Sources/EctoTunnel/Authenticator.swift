import EctoConfig
import EctoHostKeys
import EctoSSH
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Public key authentication, non-blocking, with the identities ssh would use: the agent's keys
/// first, then the identity files (`identity_file`, or `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`
/// that exist), each with its certificate when there is one.
///
/// RSA keys: libssh2 1.10 signs them with ssh-rsa (SHA-1) only, which OpenSSH ≥ 8.8 refuses by
/// default. So an RSA key is offered under rsa-sha2-512, then rsa-sha2-256, then ssh-rsa, signed
/// by us (`SSHPrivateKey`) or by the agent with the SHA-2 flags (`SSHAgentSigner`); see
/// docs/security.md. Built against libssh2 1.11 or later, the library's own path is used.
///
/// Every offer counts against the server's MaxAuthTries (OpenSSH: 6), so attempts go round by
/// round: each identity's first attempt, then each one's second, and so on; with OpenSSH the
/// right RSA key succeeds in the first round, and dropbear (ssh-rsa only) is reached in the third.
final class Authenticator {
    /// One key that may be offered, and what happened to it.
    final class Identity {
        enum Source {
            case agent(index: Int)
            case file(path: String)
        }

        let source: Source
        /// "agent key SHA256:… (ssh-rsa, comment)" or "identity file PATH".
        let label: String
        /// The plain public key blob, when known.
        var blob: [UInt8]?
        /// File keys: decrypted, for our own signatures.
        var key: SSHPrivateKey?
        /// File keys: the file's bytes, for libssh2's own key path.
        var material: PrivateKeyMaterial?
        /// The certificate to offer before the plain key: its path, blob and public line.
        var certificate: (path: String, blob: [UInt8], line: [UInt8])?
        /// What happened to each offer, for the final message.
        var outcomes: [String] = []

        init(source: Source, label: String) {
            self.source = source
            self.label = label
        }

        var isRSA: Bool { blob.map { SSHWire.strings($0)?.first == Array("ssh-rsa".utf8) } ?? (key?.isRSA ?? false) }
    }

    /// One offer to the server.
    enum Attempt {
        /// libssh2's agent path (non-RSA keys; RSA as ssh-rsa).
        case agentLibrary(Identity, index: Int)
        /// Our blob named `algorithm`, signed by the agent with the SHA-2 flag.
        case agentRSA(Identity, index: Int, RSASignatureAlgorithm)
        /// libssh2's key path from the file's bytes (non-RSA keys; every key on libssh2 ≥ 1.11).
        case fileLibrary(Identity)
        /// Our blob named `algorithm`, signed by us.
        case fileRSA(Identity, RSASignatureAlgorithm)
        /// The certificate through libssh2's key path. ECDSA certificates work with 1.10 (it names
        /// their signatures after the plain key type); Ed25519 and RSA certificates do not: 1.10
        /// names the signature after the certificate's algorithm and sshd answers "key type does
        /// not match" (measured, docs/troubleshooting.md), so they are not offered.
        case certificateLibrary(Identity)

        var identity: Identity {
            switch self {
            case .agentLibrary(let i, _), .agentRSA(let i, _, _), .fileLibrary(let i), .fileRSA(let i, _),
                .certificateLibrary(let i):
                return i
            }
        }

        /// What was offered, for messages: "rsa-sha2-512", "certificate …".
        var what: String {
            switch self {
            case .agentLibrary(let identity, _), .fileLibrary(let identity):
                return identity.isRSA
                    ? "ssh-rsa"
                    : (identity.blob.flatMap { SSHWire.strings($0)?.first }.map { String(decoding: $0, as: UTF8.self) }
                        ?? "key")
            case .agentRSA(_, _, let algorithm), .fileRSA(_, let algorithm): return algorithm.rawValue
            case .certificateLibrary(let identity):
                return "certificate \(identity.certificate?.path ?? "")"
            }
        }
    }

    enum Step {
        case listMethods
        case attempt(Int)
        case exhausted
    }

    let user: String
    let agentSocket: String?
    let identitiesOnly: Bool
    let logger: Logging.Logger
    var step: Step = .listMethods
    var agent: SSHAgent?
    /// File identities (configured or default), in order.
    var files: [Identity] = []
    /// Problems with files found by default (not configured): noted, not fatal.
    var notes: [String] = []
    var plan: [Attempt] = []
    /// Offers made to the server (each counts against MaxAuthTries).
    var attempts = 0
    var agentProblem: String?

    init(config: TunnelConfig, environment: [String: String], logger: Logging.Logger) throws(AttemptFailure) {
        self.user = config.target.user ?? "root"
        self.logger = logger
        self.identitiesOnly = config.identitiesOnly
        let socket = environment["SSH_AUTH_SOCK"].flatMap { $0.isEmpty ? nil : $0 }
        self.agentSocket = socket
        let passphrase = try Credentials.loadPassphrase(config, environment: environment)
        let explicit = !config.identityFiles.isEmpty
        let paths = explicit ? config.identityFiles : Self.defaultIdentityFiles(environment: environment)
        for path in paths {
            let identity = Identity(source: .file(path: path), label: "identity file \(path)")
            do {
                try Self.load(identity, path: path, passphrase: passphrase, certificateFile: config.certificateFile)
                files.append(identity)
            } catch {
                // A configured key that cannot work is a local problem to fix (no retries); a
                // default one is skipped, as ssh does, and named in the final message.
                if explicit { throw error }
                notes.append("\(identity.label) skipped: \(error.message)")
                logger.warning("\(identity.label) skipped: \(error.message)")
            }
        }
        if let certificate = config.certificateFile, !files.contains(where: { $0.certificate?.path == certificate }) {
            throw AttemptFailure(
                .local,
                "certificate_file \(certificate) does not certify any of the identity files (\(paths.joined(separator: ", ")))"
            )
        }
        if socket == nil && files.isEmpty {
            var message = "no credentials: SSH_AUTH_SOCK is not set (no ssh-agent) and "
            message +=
                explicit
                ? "no identity file is usable"
                : "no identity_file is configured and none of ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa, ~/.ssh/id_rsa is usable"
            if !notes.isEmpty { message += " (" + notes.joined(separator: "; ") + ")" }
            throw AttemptFailure(.local, message)
        }
    }

    /// `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`, those that exist and are regular files.
    static func defaultIdentityFiles(environment: [String: String]) -> [String] {
        var home = environment["HOME"] ?? ""
        if home.isEmpty, let pw = getpwuid(getuid()), let dir = pw.pointee.pw_dir { home = String(cString: dir) }
        guard !home.isEmpty else { return [] }
        return TunnelDefaults.identityFiles.map { (home.hasSuffix("/") ? home : home + "/") + $0 }.filter { path in
            var info = stat()
            return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
        }
    }

    /// Reads, checks and decrypts one identity file, and finds its certificate.
    private static func load(
        _ identity: Identity, path: String, passphrase: String?, certificateFile: String?
    ) throws(AttemptFailure) {
        var bytes = try Credentials.readSecretFile(path, what: "private key")
        defer { wipeBytes(&bytes) }
        var secret = passphrase.map { Array($0.utf8) }
        defer { if secret != nil { wipeBytes(&secret!) } }
        let key: SSHPrivateKey
        do {
            key = try SSHPrivateKey.load(bytes, passphrase: secret)
        } catch {
            let reason: String =
                switch error.kind {
                case .wrongPassphrase:
                    "wrong passphrase (from identity_passphrase_file / identity_passphrase_credential)"
                case .needsPassphrase:
                    "the key is encrypted: set identity_passphrase_file or identity_passphrase_credential, or add it to ssh-agent"
                case .unsupportedType: "unsupported key type: \(error.message)"
                default: error.message
                }
            throw AttemptFailure(.local, "cannot use private key \(path): \(reason)")
        }
        identity.key = key
        identity.blob = key.publicKeyBlob ?? publicBlob(fromFile: path + ".pub")
        // The certificate: certificate_file when it certifies this key, else KEY-cert.pub beside it.
        for candidate in [certificateFile, path + "-cert.pub"].compactMap({ $0 }) {
            guard let line = readPublicFile(candidate),
                let cert = try? HostKey(openSSHLine: String(decoding: line, as: UTF8.self)),
                cert.algorithm.hasSuffix("-cert-v01@openssh.com")
            else { continue }
            guard let blob = identity.blob, certifiedKey(cert.blob) == blob else { continue }
            identity.certificate = (candidate, cert.blob, line)
            break
        }
        // The file's bytes only when libssh2 signs from them (not for RSA keys we sign ourselves).
        if !key.isRSA || SSHLibrary.signsRSASHA2 || identity.certificate != nil {
            identity.material = PrivateKeyMaterial(path: path, bytes: bytes, passphrase: passphrase)
        }
    }

    /// The plain public key blob a certificate certifies (its key fields without nonce and the rest).
    static func certifiedKey(_ certificate: [UInt8]) -> [UInt8]? {
        // type, nonce, then the key's fields (ed25519: 1, ECDSA: 2, RSA: 2), then non-string fields.
        guard let first = partialStrings(certificate, count: 1) else { return nil }
        let type = String(decoding: first[0], as: UTF8.self)
        guard let strings = partialStrings(certificate, count: type.hasPrefix("ssh-ed25519") ? 3 : 4) else {
            return nil
        }
        switch type {
        case "ssh-ed25519-cert-v01@openssh.com" where strings.count >= 3:
            return SSHWire.string(Array("ssh-ed25519".utf8)) + SSHWire.string(strings[2])
        case let t where t.hasPrefix("ecdsa-sha2-") && strings.count >= 4:
            return SSHWire.string(Array(t.dropLast("-cert-v01@openssh.com".count).utf8)) + SSHWire.string(strings[2])
                + SSHWire.string(strings[3])
        case "ssh-rsa-cert-v01@openssh.com" where strings.count >= 4:
            return SSHWire.string(Array("ssh-rsa".utf8)) + SSHWire.string(strings[2]) + SSHWire.string(strings[3])
        default:
            return nil
        }
    }

    /// The first `count` strings of `blob` (a certificate has non-string fields further on).
    private static func partialStrings(_ blob: [UInt8], count: Int) -> [[UInt8]]? {
        var result: [[UInt8]] = []
        var offset = 0
        while result.count < count {
            guard blob.count - offset >= 4 else { return nil }
            let length = Int(blob[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            guard length <= blob.count - offset - 4 else { return nil }
            result.append(Array(blob[offset + 4..<offset + 4 + length]))
            offset += 4 + length
        }
        return result
    }

    private static func readPublicFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 16384)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        guard n > 0 else { return nil }
        return Array(buffer[0..<n])
    }

    private static func publicBlob(fromFile path: String) -> [UInt8]? {
        readPublicFile(path).flatMap { try? HostKey(openSSHLine: String(decoding: $0, as: UTF8.self)).blob }
    }

    // MARK: Running

    /// Returns true once authenticated, false when it must wait for the socket.
    func advance(_ session: SSHSession) throws(AttemptFailure) -> Bool {
        while true {
            switch step {
            case .listMethods:
                let methods: [String]?
                do {
                    guard case .done(let result) = try session.authenticationMethods(user: user) else { return false }
                    methods = result
                } catch {
                    throw AttemptFailure(error.isTransportFailure ? .transport : .authentication, error.description)
                }
                guard let methods else { return true }
                guard methods.contains("publickey") else {
                    throw AttemptFailure(
                        .authentication,
                        "the server does not offer public key authentication for \(user) (offers: \(methods.joined(separator: ", ")))"
                    )
                }
                plan = makePlan(session)
                step = plan.isEmpty ? .exhausted : .attempt(0)
            case .attempt(let index):
                guard index < plan.count else {
                    step = .exhausted
                    continue
                }
                let attempt = plan[index]
                do {
                    guard case .done = try run(attempt, session) else { return false }
                    attempts += 1
                    var metadata: Logging.Logger.Metadata = [
                        "ssh.auth": "\(attempt.what)", "ssh.auth_attempts": "\(attempts)",
                    ]
                    switch attempt.identity.source {
                    case .agent:
                        metadata["key"] = "\(attempt.identity.label.dropFirst("agent key ".count))"
                        logger.info("authenticated with an ssh-agent key", metadata: metadata)
                    case .file(let path):
                        metadata["identity_file"] = "\(path)"
                        logger.info("authenticated with identity file", metadata: metadata)
                    }
                    return true
                } catch {
                    // OpenSSH answers the offer that reaches MaxAuthTries with a disconnect
                    // instead of a failure; libssh2 1.10 reports that as -19 (unverified).
                    let ended = session.peerEnded
                    attempts += 1
                    let outcome =
                        ended != nil && !error.isPublicKeyRefused
                        ? "answered by ending the session"
                        : error.isAuthenticationRefused ? "refused by server" : error.message
                    attempt.identity.outcomes.append("\(outcome) (\(attempt.what))")
                    logger.debug(
                        "key not accepted",
                        metadata: [
                            "key": "\(attempt.identity.label)", "ssh.auth": "\(attempt.what)", "reason": "\(outcome)",
                        ])
                    if error.isTransportFailure || ended != nil {
                        guard let ended, attempts >= 2 else {
                            throw AttemptFailure(
                                .transport, ended.map { "the server ended the session (\($0))" } ?? error.description)
                        }
                        throw AttemptFailure(
                            .authentication,
                            "the server ended the session (\(ended)) at authentication attempt \(attempts) (its MaxAuthTries, 6 by default in OpenSSH, counts every key offered and every RSA algorithm); tried: \(summary()); offer fewer keys: identities_only = true with identity_file"
                        )
                    }
                    step = .attempt(index + 1)
                }
            case .exhausted:
                var message = "the server refused authentication as \(user)"
                let tried = summary()
                message += tried.isEmpty ? "; no key was offered" : "; tried: " + tried
                if let agentProblem { message += "; \(agentProblem)" }
                if !notes.isEmpty { message += "; " + notes.joined(separator: "; ") }
                throw AttemptFailure(.authentication, message)
            }
        }
    }

    /// "agent key SHA256:… (RSA): refused by server (rsa-sha2-512), …; identity file …: …" and the count.
    private func summary() -> String {
        let identities = plan.map(\.identity).reduce(into: [Identity]()) { list, identity in
            if !list.contains(where: { $0 === identity }) { list.append(identity) }
        }
        let parts = identities.filter { !$0.outcomes.isEmpty }.map {
            "\($0.label): " + $0.outcomes.joined(separator: ", ")
        }
        guard !parts.isEmpty else { return "" }
        return parts.joined(separator: "; ") + " (\(attempts) attempt\(attempts == 1 ? "" : "s"))"
    }

    /// One offer. Throws the libssh2 error (or our signer's) when it was not accepted.
    private func run(_ attempt: Attempt, _ session: SSHSession) throws(SSHError) -> SSHResult<Void> {
        let result: SSHResult<Void>
        switch attempt {
        case .agentLibrary(_, let index):
            result = try agent!.authenticate(user: user, identity: index)
        case .agentRSA(let identity, let index, let algorithm):
            let original = agent!.identityBlob(index)
            guard let blob = algorithm.blob(from: original), let socket = agentSocket else {
                throw SSHError(code: 0, message: "not an RSA key", operation: "ssh-agent authentication")
            }
            let logger = self.logger
            result = try session.authenticate(user: user, publicKeyBlob: blob) { data in
                do throws(SSHError) {
                    let signature = try SSHAgentSigner.sign(
                        socketPath: socket, keyBlob: original, data: Array(data), algorithm: algorithm)
                    let pointer = UnsafeMutablePointer<UInt8>(OpaquePointer(malloc(max(1, signature.count))!))
                    signature.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: signature.count) }
                    return .signature(pointer, count: signature.count)
                } catch {
                    logger.debug(
                        "ssh-agent could not sign",
                        metadata: ["key": "\(identity.label)", "reason": "\(error.message)"])
                    return .failed(error.message)
                }
            }
        case .fileLibrary(let identity):
            let material = identity.material!
            result = try session.authenticate(user: user, privateKey: material.bytes, passphrase: material.passphrase)
        case .fileRSA(let identity, let algorithm):
            guard let key = identity.key, let plain = key.publicKeyBlob, let blob = algorithm.blob(from: plain) else {
                throw SSHError(code: 0, message: "not an RSA key", operation: "public key authentication")
            }
            result = try session.authenticate(user: user, publicKeyBlob: blob) { data in
                key.signRSARaw(data, algorithm: algorithm).map { .signature($0.0, count: $0.1) }
                    ?? .failed("OpenSSL could not sign with the key")
            }
        case .certificateLibrary(let identity):
            let material = identity.material!
            result = try session.authenticate(
                user: user, privateKey: material.bytes, passphrase: material.passphrase,
                publicKey: identity.certificate!.line)
        }
        return result
    }

    /// The offers, round by round (each identity's first, then each one's second, …).
    private func makePlan(_ session: SSHSession) -> [Attempt] {
        var perIdentity: [[Attempt]] = []
        let ownRSA = !SSHLibrary.signsRSASHA2
        // Keys listed for identities_only: the files' public keys.
        let listed = files.compactMap(\.blob)
        var agentBlobs: [[UInt8]] = []
        if let agentSocket {
            do {
                let agent = try SSHAgent(session: session, socketPath: agentSocket)
                let comments = try agent.connectAndListIdentities()
                self.agent = agent
                if comments.isEmpty { agentProblem = "the ssh-agent at \(agentSocket) holds no keys" }
                for index in comments.indices {
                    let blob = agent.identityBlob(index)
                    if identitiesOnly && !listed.contains(blob) { continue }
                    let key = try? HostKey(blob: blob)
                    let description =
                        key.map {
                            "\($0.fingerprintSHA256) (\($0.algorithm)\(comments[index].isEmpty ? "" : ", \(comments[index])"))"
                        } ?? "#\(index)"
                    let identity = Identity(source: .agent(index: index), label: "agent key \(description)")
                    identity.blob = blob
                    agentBlobs.append(blob)
                    if identity.isRSA && ownRSA {
                        perIdentity.append([
                            .agentRSA(identity, index: index, .sha512), .agentRSA(identity, index: index, .sha256),
                            .agentLibrary(identity, index: index),
                        ])
                    } else {
                        perIdentity.append([.agentLibrary(identity, index: index)])
                    }
                }
                if identitiesOnly && !comments.isEmpty && agentBlobs.isEmpty {
                    logger.debug("identities_only: no agent key matches an identity file")
                }
            } catch {
                agentProblem = "ssh-agent at \(agentSocket) not usable: \(error.message)"
                logger.warning("\(agentProblem!)")
            }
        }
        for identity in files {
            // A key the agent holds is offered once, through the agent (as ssh does).
            if let blob = identity.blob, agentBlobs.contains(blob), identity.certificate == nil { continue }
            var attempts: [Attempt] = []
            if let certificate = identity.certificate, let type = try? HostKey(blob: certificate.blob).algorithm {
                if IdentityCheck.certificateUsable(type) {
                    attempts.append(.certificateLibrary(identity))
                } else {
                    identity.outcomes.append(
                        "certificate \(certificate.path) not offered (\(IdentityCheck.certificateLimitation(type)))")
                }
            }
            if let blob = identity.blob, agentBlobs.contains(blob) {
                perIdentity.append(attempts)
                continue
            }
            if identity.key?.isRSA == true && ownRSA {
                attempts += [.fileRSA(identity, .sha512), .fileRSA(identity, .sha256), .fileRSA(identity, .sha1)]
            } else {
                attempts.append(.fileLibrary(identity))
            }
            perIdentity.append(attempts)
        }
        var plan: [Attempt] = []
        let rounds = perIdentity.map(\.count).max() ?? 0
        for round in 0..<rounds {
            for attempts in perIdentity where round < attempts.count { plan.append(attempts[round]) }
        }
        return plan
    }
}
