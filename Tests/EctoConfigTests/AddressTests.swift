import Testing
@testable import EctoConfig

@Suite struct EndpointParsing {
    @Test func ipv4() throws {
        let e = try Endpoint.parse("127.0.0.1:18789")
        #expect(e == Endpoint(host: "127.0.0.1", port: 18789))
        #expect(e.description == "127.0.0.1:18789")
        #expect(e.isLoopback)
        #expect(!e.isWildcard)
    }

    @Test func ipv6InBrackets() throws {
        let e = try Endpoint.parse("[::1]:80")
        #expect(e.host == "::1")
        #expect(e.port == 80)
        #expect(e.description == "[::1]:80")
        #expect(e.isLoopback)
        let full = try Endpoint.parse("[2001:db8::ff00:42:8329]:443")
        #expect(full.host == "2001:db8::ff00:42:8329")
        #expect(!full.isLoopback)
        let mapped = try Endpoint.parse("[::ffff:127.0.0.2]:1")
        #expect(mapped.isLoopback)
    }

    @Test func names() throws {
        let e = try Endpoint.parse("localhost:80")
        #expect(e.host == "localhost")
        #expect(e.isLoopback)
        #expect(try Endpoint.parse("LOCALHOST:80").isLoopback)
        let db = try Endpoint.parse("db-1.internal_net.example:5432")
        #expect(db.host == "db-1.internal_net.example")
        #expect(!db.isLoopback)
    }

    @Test func loopbackRange() throws {
        #expect(try Endpoint.parse("127.255.0.9:1").isLoopback)
        #expect(!(try Endpoint.parse("128.0.0.1:1").isLoopback))
        #expect(!(try Endpoint.parse("10.0.0.1:1").isLoopback))
        #expect(!(try Endpoint.parse("[::2]:1").isLoopback))
    }

    @Test func wildcards() throws {
        #expect(try Endpoint.parse("0.0.0.0:80").isWildcard)
        #expect(try Endpoint.parse("[::]:80").isWildcard)
        #expect(try Endpoint.parse("[0:0::0]:80").isWildcard)
        #expect(!(try Endpoint.parse("[::1]:80").isWildcard))
        #expect(!(try Endpoint.parse("0.0.0.0:80").isLoopback))
    }

    @Test(arguments: [
        ("127.0.0.1:99999", "port must be 1-65535"),
        ("127.0.0.1:0", "port must be 1-65535"),
        ("127.0.0.1:65536", "port must be 1-65535"),
        ("127.0.0.1:", "missing port number"),
        ("127.0.0.1", "missing port"),
        ("localhost", "missing port"),
        ("18789", "missing host (expected host:port, e.g. 127.0.0.1:18789)"),
        (":80", "missing host"),
        ("", "empty address"),
        ("::1:80", "must be written in brackets"),
        ("[::1]", "missing port"),
        ("[::1]80", "after \"]\""),
        ("[::1:80", "missing \"]\""),
        ("[zz::1]:80", "not a valid IPv6 address"),
        ("256.0.0.1:80", "not a valid IPv4 address"),
        ("1.2.3:80", "not a valid IPv4 address"),
        ("bad host:80", "a space"),
        ("under-_-.ok..:80", "not a valid host name"),
        ("-lead.example:80", "not a valid host name"),
        ("host:http", "is not a number"),
        ("host:-1", "is not a number"),
    ])
    func rejects(input: String, fragment: String) {
        do {
            let e = try Endpoint.parse(input)
            Issue.record("parsed \(input) as \(e)")
        } catch {
            #expect(error.message.contains(fragment), "\(input): \(error.message)")
        }
    }

    @Test func ipv6Forms() {
        #expect(HostSyntax.parseIPv6("::") == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(HostSyntax.parseIPv6("1::") == [1, 0, 0, 0, 0, 0, 0, 0])
        #expect(HostSyntax.parseIPv6("1:2:3:4:5:6:7:8") == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(HostSyntax.parseIPv6("::ffff:1.2.3.4") == [0, 0, 0, 0, 0, 0xFFFF, 0x0102, 0x0304])
        #expect(HostSyntax.parseIPv6("fe80::1%eth0") == [0xFE80, 0, 0, 0, 0, 0, 0, 1])
        #expect(HostSyntax.parseIPv6("1:2:3:4:5:6:7:8:9") == nil)
        #expect(HostSyntax.parseIPv6("1::2::3") == nil)
        #expect(HostSyntax.parseIPv6(":1::") == nil)
        #expect(HostSyntax.parseIPv6("12345::") == nil)
        #expect(HostSyntax.parseIPv6("1:2:3:4:5:6:7::8") == nil)
    }

    @Test func overlap() {
        #expect(HostSyntax.overlaps("127.0.0.1", "127.0.0.1"))
        #expect(HostSyntax.overlaps("0.0.0.0", "127.0.0.1"))
        #expect(HostSyntax.overlaps("::", "127.0.0.1"))
        #expect(HostSyntax.overlaps("localhost", "127.0.0.1"))
        #expect(HostSyntax.overlaps("localhost", "0:0::1"))
        #expect(!HostSyntax.overlaps("127.0.0.1", "127.0.0.2"))
        #expect(!HostSyntax.overlaps("::1", "127.0.0.1"))
    }
}

@Suite struct TargetParsing {
    @Test func hostOnly() throws {
        let t = try SSHTarget.parse("gw.example.net")
        #expect(t == SSHTarget(user: nil, host: "gw.example.net", port: 22))
        #expect(t.description == "gw.example.net:22")
    }

    @Test func userHostPort() throws {
        let t = try SSHTarget.parse("ops@gw.example.net:2222")
        #expect(t.user == "ops")
        #expect(t.host == "gw.example.net")
        #expect(t.port == 2222)
        #expect(t.description == "ops@gw.example.net:2222")
    }

    @Test func ipv6() throws {
        let t = try SSHTarget.parse("root@[2001:db8::1]:22")
        #expect(t == SSHTarget(user: "root", host: "2001:db8::1", port: 22))
        #expect(t.description == "root@[2001:db8::1]:22")
        let noPort = try SSHTarget.parse("[::1]")
        #expect(noPort == SSHTarget(user: nil, host: "::1", port: 22))
        #expect(noPort.description == "[::1]:22")
    }

    @Test func ipv4AndUserWithAt() throws {
        #expect(try SSHTarget.parse("10.1.2.3:2200") == SSHTarget(host: "10.1.2.3", port: 2200))
        // The last @ separates the user, as in ssh.
        #expect(try SSHTarget.parse("a@b@host") == SSHTarget(user: "a@b", host: "host"))
    }

    @Test(arguments: [
        ("", "empty target"),
        ("@host", "empty user"),
        ("ops@", "missing host"),
        ("ops@host:0", "port must be 1-65535"),
        ("ops@host:70000", "port must be 1-65535"),
        ("ops@host:", "missing port number"),
        ("2001:db8::1", "brackets"),
        ("ops@[2001:db8::1", "missing \"]\""),
        ("o ps@host", "user name contains a space"),
        ("ops@ho st", "a space"),
        ("ops@999.1.1.1", "not a valid IPv4 address"),
    ])
    func rejects(input: String, fragment: String) {
        do {
            let t = try SSHTarget.parse(input)
            Issue.record("parsed \(input) as \(t)")
        } catch {
            #expect(error.message.contains(fragment), "\(input): \(error.message)")
        }
    }
}
