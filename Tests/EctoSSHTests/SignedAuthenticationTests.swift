import EctoHostKeys
import EctoTestSupport
import Foundation
import Glibc
import Testing

@testable import EctoSSH

/// `SSHSession.authenticate(user:publicKeyBlob:sign:)` and `SSHAgentSigner` against a real sshd
/// with its default PubkeyAcceptedAlgorithms, driven by a small poll loop.
@Suite("Public key auth with our own blob and signer (libssh2 1.10)", .serialized)
struct SignedAuthenticationTests {
    let keys = GeneratedKeys.shared

    /// Calls `step` until it is done, waiting for the socket in between (at most 5 s).
    private func drive<T>(_ session: SSHSession, _ step: () throws(SSHError) -> SSHResult<T>) throws -> T {
        let deadline = ContinuousClock.now.advanced(by: .seconds(5))
        while ContinuousClock.now < deadline {
            session.beginPass()
            if case .done(let value) = try step() { return value }
            var pfd = pollfd(fd: session.socket, events: Int16(POLLIN | POLLOUT), revents: 0)
            _ = poll(&pfd, 1, 20)
        }
        throw SSHError(code: 0, message: "timed out", operation: "test")
    }

    /// A connected, handshaken session to `server`.
    private func session(_ server: SSHServer) throws -> SSHSession {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = server.port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        #expect(rc == 0)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let session = try SSHSession(socket: fd)
        try drive(session) { () throws(SSHError) in try session.handshake() }
        _ = try drive(session) { () throws(SSHError) in try session.authenticationMethods(user: server.user) }
        return session
    }

    /// A signer that signs with `hash` whatever the blob is named.
    private func signer(
        _ key: SSHPrivateKey, _ hash: RSASignatureAlgorithm
    ) -> (UnsafeRawBufferPointer) -> SignatureResult {
        { data in key.signRSARaw(data, algorithm: hash).map { .signature($0.0, count: $0.1) } ?? .failed("no signature")
        }
    }

    @Test(
        "rsa-sha2-512 and rsa-sha2-256 blobs with matching signatures are accepted; ssh-rsa is refused by OpenSSH's defaults"
    )
    func namedAlgorithms() throws {
        let server = try SSHServer.started()
        defer { server.cleanup() }
        let pair = keys.rsa[3072]!
        try server.authorize(pair)
        let key = try SSHPrivateKey.load(
            [UInt8](FileManager.default.contents(atPath: pair.privatePath)!), passphrase: nil)
        for algorithm in [RSASignatureAlgorithm.sha512, .sha256] {
            let s = try session(server)
            let blob = try #require(algorithm.blob(from: key.publicKeyBlob!))
            try drive(s) { () throws(SSHError) in
                try s.authenticate(user: server.user, publicKeyBlob: blob, sign: signer(key, algorithm))
            }
            #expect(s.isAuthenticated, "\(algorithm)")
        }
        let s = try session(server)
        #expect(throws: SSHError.self) {
            try drive(s) { () throws(SSHError) in
                try s.authenticate(user: server.user, publicKeyBlob: key.publicKeyBlob!, sign: signer(key, .sha1))
            }
        }
        #expect(server.log().contains("ssh-rsa not in PubkeyAcceptedAlgorithms"))
    }

    @Test("negative control: a signature made with another hash than the blob names is rejected")
    func mismatchedHashRejected() throws {
        let server = try SSHServer.started()
        defer { server.cleanup() }
        let pair = keys.rsa[2048]!
        try server.authorize(pair)
        let key = try SSHPrivateKey.load(
            [UInt8](FileManager.default.contents(atPath: pair.privatePath)!), passphrase: nil)
        for (named, signed) in [
            (RSASignatureAlgorithm.sha512, RSASignatureAlgorithm.sha1), (.sha512, .sha256), (.sha256, .sha512),
        ] {
            let s = try session(server)
            let blob = try #require(named.blob(from: key.publicKeyBlob!))
            do {
                try drive(s) { () throws(SSHError) in
                    try s.authenticate(user: server.user, publicKeyBlob: blob, sign: signer(key, signed))
                }
                Issue.record("\(signed) signature accepted under \(named)")
            } catch let error as SSHError {
                #expect(error.isAuthenticationRefused, "\(error)")
            }
            #expect(!s.isAuthenticated)
        }
    }

    @Test("the agent signs with the SHA-2 flags; a key it does not hold is refused by name")
    func agentSigner() throws {
        let agent = try SSHAgent()
        defer { agent.stop() }
        let pair = keys.rsa[2048]!
        try agent.add(pair)
        let key = try SSHPrivateKey.load(
            [UInt8](FileManager.default.contents(atPath: pair.privatePath)!), passphrase: nil)
        let data = Array("data to sign".utf8)
        for algorithm in [RSASignatureAlgorithm.sha512, .sha256] {
            let signature = try SSHAgentSigner.sign(
                socketPath: agent.socketPath, keyBlob: key.publicKeyBlob!, data: data, algorithm: algorithm)
            #expect(key.verifyRSA(data, signature: signature, algorithm: algorithm), "\(algorithm)")
        }
        let other = try SSHPrivateKey.load(
            [UInt8](FileManager.default.contents(atPath: keys.rsa[3072]!.privatePath)!), passphrase: nil)
        #expect(throws: SSHError.self) {
            try SSHAgentSigner.sign(
                socketPath: agent.socketPath, keyBlob: other.publicKeyBlob!, data: data, algorithm: .sha512)
        }
    }
}
