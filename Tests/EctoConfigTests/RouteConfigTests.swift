import Testing
@testable import EctoConfig

/// `jump` and `proxy_command`: parsing, defaults, and errors with file:line and key.
@Suite struct RouteConfigTests {
    let head = """
        [tunnels.gw]
        target = "ops@gw.internal:2222"
        local = "127.0.0.1:18789"
        remote = "127.0.0.1:18789"

        """

    @Test func jumpHostsParsedFirstHopFirstWithTheLocalUserAsDefault() throws {
        let config = try parseConfig(head + "jump = [\"admin@bastion.example.net\", \"relay.example.net:2200\"]\n")
        let tunnel = try #require(config.tunnels.first)
        #expect(
            tunnel.jump == [
                SSHTarget(user: "admin", host: "bastion.example.net", port: 22),
                // ssh: the local user, not the target's.
                SSHTarget(user: "alice", host: "relay.example.net", port: 2200),
            ])
        #expect(tunnel.proxyCommand == nil)
    }

    @Test func jumpInDefaultsAppliesAndATunnelMayTurnItOff() throws {
        let text = """
            [defaults]
            jump = ["bastion.example.net"]

            \(head)
            [tunnels.direct]
            target = "db.example.net"
            local = "127.0.0.1:5432"
            remote = "127.0.0.1:5432"
            jump = []
            """
        let config = try parseConfig(text)
        #expect(config.tunnels[0].jump.map(\.host) == ["bastion.example.net"])
        #expect(config.tunnels[1].jump.isEmpty)
    }

    @Test func proxyCommandKeptAsWritten() throws {
        let config = try parseConfig(head + "proxy_command = \"cloudflared access ssh --hostname %h\"\n")
        #expect(config.tunnels.first?.proxyCommand == "cloudflared access ssh --hostname %h")
    }

    @Test func jumpAndProxyCommandAreExclusive() {
        let errors = configErrors(head + "jump = [\"bastion\"]\nproxy_command = \"nc %h %p\"\n")
        #expect(
            errors.map(\.description) == [
                "/cfg/config.toml:6: tunnels.gw.proxy_command: set either jump or proxy_command, not both (ssh's ProxyJump and ProxyCommand are exclusive too)"
            ])
    }

    @Test func badJumpHostsAndCommands() {
        #expect(
            configErrors(head + "jump = \"bastion\"\n").map(\.description) == [
                "/cfg/config.toml:5: tunnels.gw.jump: expected an array of strings \"[user@]host[:port]\" (first hop first), got string \"bastion\""
            ])
        #expect(
            configErrors(head + "jump = [\"bastion:99999\"]\n").first?.description.hasPrefix(
                "/cfg/config.toml:5: tunnels.gw.jump: hop 1, \"bastion:99999\", is not a valid jump host") == true)
        let nine = (1...9).map { "\"h\($0)\"" }.joined(separator: ", ")
        #expect(
            configErrors(head + "jump = [\(nine)]\n").map(\.description) == [
                "/cfg/config.toml:5: tunnels.gw.jump: 9 jump hosts: at most 8 are supported"
            ])
        #expect(
            configErrors(head + "proxy_command = \"nc %h %x\"\n").map(\.description) == [
                "/cfg/config.toml:5: tunnels.gw.proxy_command: \"nc %h %x\" is not a usable proxy command: unknown token %x (supported: %h host, %p port, %r user, %n host as named, %% a %)"
            ])
        #expect(configErrors(head + "proxy_command = \"  \"\n").first?.description.hasSuffix("empty command") == true)
        #expect(
            configErrors(head + "proxy_command = \"nc %h %p %\"\n").first?.description.hasSuffix(
                "a lone % at the end (write %% for a %)") == true)
    }

    @Test func tokensAndWords() {
        let line = ProxyCommandLine.expand(
            "ssh -W %h:%p -l %r %n 100%%", host: "10.0.0.5", port: 2222, user: "ops", name: "gw")
        #expect(line == "ssh -W 10.0.0.5:2222 -l ops gw 100%")
        // No shell syntax: words, run directly.
        #expect(ProxyCommandLine.arguments("tailscale nc gw 22") == ["tailscale", "nc", "gw", "22"])
        #expect(
            ProxyCommandLine.arguments("cloudflared access ssh --hostname=gw") == [
                "cloudflared", "access", "ssh", "--hostname=gw",
            ])
        // Quotes, pipes, variables, an assignment first: a shell, exec'd as ssh does.
        #expect(
            ProxyCommandLine.arguments("nc -X 5 -x \"$PROXY\" gw 22") == [
                "/bin/sh", "-c", "exec nc -X 5 -x \"$PROXY\" gw 22",
            ])
        #expect(ProxyCommandLine.arguments("A=1 nc gw 22") == ["/bin/sh", "-c", "exec A=1 nc gw 22"])
        #expect(ProxyCommandLine.arguments("nc gw 22 2>/dev/null") == ["/bin/sh", "-c", "exec nc gw 22 2>/dev/null"])
    }
}
