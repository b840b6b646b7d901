import EctoControl
import EctoTestSupport
import Foundation
import Testing

/// Jump hosts (`jump`, ssh's ProxyJump) and proxy commands (`proxy_command`) with real sshd servers:
/// every hop a real session with its own host key check and authentication.
@Suite("Jump hosts and proxy commands", .serialized)
struct JumpTests {
    /// A further sshd that accepts the fixture's client key, trusted in the fixture's known_hosts.
    static func bastion(_ fixture: TunnelFixture, extraConfig: [String] = []) throws -> SSHServer {
        let server = try SSHServer(extraConfig: extraConfig)
        try server.authorize(fixture.clientKey)
        try server.writeKnownHosts(to: fixture.knownHosts, append: true)
        try server.start()
        return server
    }

    @Test("two jump hosts on loopback: three sessions in a chain, 8 MiB each way intact, each hop in sshd's log")
    func twoHopChain() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let first = try Self.bastion(fixture)
        defer { first.cleanup() }
        let second = try Self.bastion(fixture)
        defer { second.cleanup() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let port = try FreePort.probe()
        try fixture.writeConfig(
            fixture.tunnel(
                localPort: port, remotePort: echo.port,
                extra: ["jump = [\"\(first.user)@127.0.0.1:\(first.port)\", \"127.0.0.1:\(second.port)\"]"]))
        try fixture.startDaemon()
        try await fixture.waitForLog("] connected")
        #expect(fixture.daemonLog.contains("through 2 hops"))
        let intact = try await offload { try echoRoundTrip(port: port, seed: 41, count: 8 << 20) }
        #expect(intact)
        // Each hop forwarded the next one's connection: its sshd says so.
        #expect(first.log().contains("direct-tcpip") || first.log().contains("Connection from"), "\(first.logTail())")
        #expect(second.log().contains("Accepted publickey"), "\(second.logTail())")
        #expect(fixture.server.log().contains("Accepted publickey"))
        let (code, report) = try fixture.statusJSON()
        #expect(code == 0)
        #expect(report?.tunnels.first?.hop == nil)
    }
}
