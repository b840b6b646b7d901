import Testing
@testable import EctoConfig

@Suite struct ForwardSyntax {
    func parse(_ s: String) throws(AddressError) -> (String, UInt16, String, UInt16) {
        let f = try Forward.parse(s)
        return (f.local.host, f.local.port, f.remote.host, f.remote.port)
    }

    @Test func forms() throws {
        #expect(try parse("18789:127.0.0.1:18789") == ("127.0.0.1", 18789, "127.0.0.1", 18789))
        #expect(try parse("127.0.0.1:8080:localhost:80") == ("127.0.0.1", 8080, "localhost", 80))
        #expect(try parse("[::1]:9000:[fe80::1]:22") == ("::1", 9000, "fe80::1", 22))
        #expect(try parse("localhost:5432:db.internal:5432") == ("localhost", 5432, "db.internal", 5432))
        #expect(try parse("9000:[2001:db8::10]:80") == ("127.0.0.1", 9000, "2001:db8::10", 80))
        // ssh: `*` or an empty bind address is every interface.
        #expect(try parse("*:8080:web:80") == ("0.0.0.0", 8080, "web", 80))
        #expect(try parse(":8080:web:80") == ("0.0.0.0", 8080, "web", 80))
        #expect(try parse("[::]:8080:web:80") == ("::", 8080, "web", 80))
    }

    @Test func description() throws {
        #expect(try Forward.parse("18789:127.0.0.1:18789").description == "127.0.0.1:18789:127.0.0.1:18789")
        #expect(try Forward.parse("[::1]:9000:[fe80::1]:22").description == "[::1]:9000:[fe80::1]:22")
        // Round trip.
        for s in ["127.0.0.1:1:h:2", "[::1]:9000:[fe80::1]:22", "0.0.0.0:80:a.b:443"] {
            #expect(try Forward.parse(Forward.parse(s).description).description == s)
        }
    }

    @Test func bad() {
        func message(_ s: String) -> String {
            do {
                _ = try Forward.parse(s)
                return "parsed"
            } catch {
                return error.message
            }
        }
        #expect(message("").contains("empty forward"))
        #expect(message("18789").contains("is not [bind_address:]port:host:hostport"))
        #expect(message("18789:127.0.0.1").contains("is not [bind_address:]port:host:hostport"))
        #expect(message("::1:9000:fe80::1:22").contains("IPv6 addresses must be written in brackets"))
        #expect(message("1:2:3:4:5").contains("too many"))
        #expect(message("[::1:9000:h:22").contains("missing \"]\""))
        #expect(message("[::1]x:9000:h:22").contains("unexpected"))
        #expect(message("[nope]:9000:h:22").contains("bind address \"nope\" is not a valid IPv6 address"))
        #expect(message("0:h:22").contains("local port: port must be 1-65535"))
        #expect(message("80:h:99999").contains("destination port: port must be 1-65535"))
        #expect(message("http:h:80").contains("local port: port \"http\" is not a number"))
        #expect(message("80::80").contains("missing destination host"))
        #expect(message("80:bad_host!:80").contains("destination host"))
        #expect(message("80:h :80").contains("a space"))
        #expect(message("/tmp/sock:h:80").contains("Unix domain socket"))
    }
}

@Suite struct ForwardsConfig {
    let head = """
        [tunnels.gw]
        target = "ops@gw.example.net"

        """

    @Test func aList() throws {
        let config = try parseConfig(
            head + """
                forwards = [
                    "18789:127.0.0.1:18789",
                    "127.0.0.1:8080:localhost:80",
                    "[::1]:9000:[fe80::1]:22",
                ]
                """)
        let t = try #require(config.tunnels.first)
        #expect(
            t.forwards.map(\.description) == [
                "127.0.0.1:18789:127.0.0.1:18789", "127.0.0.1:8080:localhost:80", "[::1]:9000:[fe80::1]:22",
            ])
        #expect(
            t.local == Endpoint(host: "127.0.0.1", port: 18789) && t.remote == Endpoint(host: "127.0.0.1", port: 18789))
    }

    @Test func oneForwardIsTheSameAsLocalRemote() throws {
        let a = try parseConfig(head + "forwards = [\"18789:127.0.0.1:18789\"]\n").tunnels[0]
        let b = try parseConfig(head + "local = \"127.0.0.1:18789\"\nremote = \"127.0.0.1:18789\"\n").tunnels[0]
        #expect(a == b)
        #expect(b.forwards.count == 1)
    }

    @Test func bothForms() {
        expectSingleError(
            head + "local = \"127.0.0.1:1\"\nforwards = [\"2:h:2\"]\n", line: 4, key: "tunnels.gw.local",
            contains: "set either forwards or local/remote, not both")
        let errors = configErrors(head + "forwards = [\"2:h:2\"]\nlocal = \"127.0.0.1:1\"\nremote = \"h:1\"\n")
        #expect(errors.map(\.line) == [4, 5] && errors.allSatisfy { $0.message.contains("not both") }, "\(errors)")
    }

    @Test func missingBoth() {
        let errors = configErrors(head)
        #expect(errors.count == 2 && errors.allSatisfy { $0.message.contains("forwards = [") }, "\(errors)")
    }

    @Test func duplicateAddresses() {
        expectSingleError(
            head + "forwards = [\"8080:a:80\", \"127.0.0.1:8080:b:80\"]\n", line: 3, key: "tunnels.gw.forwards",
            contains: "forward 2 \"127.0.0.1:8080:b:80\" listens on 127.0.0.1:8080, which overlaps forward 1")
        // localhost covers 127.0.0.1.
        expectSingleError(
            head + "forwards = [\"localhost:8080:a:80\", \"8080:b:80\"]\n", line: 3, key: "tunnels.gw.forwards",
            contains: "overlaps forward 1")
        // Another tunnel's local or forward.
        let other = """

            [tunnels.other]
            target = "ops@gw.example.net"
            local = "127.0.0.1:8080"
            remote = "h:1"
            """
        expectSingleError(
            head + "forwards = [\"9000:a:80\", \"8080:b:80\"]\n" + other, line: 7, key: "tunnels.other.local",
            contains: "overlaps local \"127.0.0.1:8080\" of tunnel \"gw\" (line 3)")
    }

    @Test func badSyntaxNamesTheItemAndItsLine() {
        expectSingleError(
            head + "forwards = [\n  \"8080:a:80\",\n  \"::1:9000:fe80::1:22\",\n]\n", line: 5,
            key: "tunnels.gw.forwards",
            contains: "forward 2 \"::1:9000:fe80::1:22\": too many \":\"")
        expectSingleError(
            head + "forwards = [\"8080:a\"]\n", line: 3, key: "tunnels.gw.forwards", contains: "forward 1 \"8080:a\"")
        expectSingleError(head + "forwards = []\n", line: 3, key: "tunnels.gw.forwards", contains: "empty list")
        expectSingleError(
            head + "forwards = [8080]\n", line: 3, key: "tunnels.gw.forwards", contains: "got an array holding")
        expectSingleError(
            head + "forwards = 8080\n", line: 3, key: "tunnels.gw.forwards", contains: "expected an array of strings")
        expectSingleError(
            "[defaults]\nforwards = [\"1:a:1\"]\n" + head + "forwards = [\"2:a:2\"]\n", line: 2,
            key: "defaults.forwards",
            contains: "cannot be set in [defaults]")
        let many = (1...65).map { "\"\($0):h:1\"" }.joined(separator: ", ")
        expectSingleError(head + "forwards = [\(many)]\n", line: 3, key: "tunnels.gw.forwards", contains: "at most 64")
    }

    @Test func nonLoopbackNeedsPermission() throws {
        expectSingleError(
            head + "forwards = [\"8080:a:80\", \"0.0.0.0:9000:b:80\"]\n", line: 3, key: "tunnels.gw.forwards",
            contains: "forward 2 \"0.0.0.0:9000:b:80\" listens on 0.0.0.0:9000, not a loopback address")
        let config = try parseConfig(head + "allow_non_loopback = true\nforwards = [\"*:9000:b:80\"]\n")
        #expect(config.tunnels[0].local == Endpoint(host: "0.0.0.0", port: 9000))
    }
}

@Suite struct HostKeyAliasConfig {
    let head = """
        [tunnels.gw]
        target = "ops@10.0.0.5:2222"
        local = "127.0.0.1:1"
        remote = "h:1"

        """

    @Test func aliasReplacesHostAndPortForKnownHosts() throws {
        let t = try parseConfig(head + "host_key_alias = \"gw-alias\"\n").tunnels[0]
        #expect(t.hostKeyAlias == "gw-alias")
        #expect(t.knownHostsKey.host == "gw-alias" && t.knownHostsKey.port == 22)
        let plain = try parseConfig(head).tunnels[0]
        #expect(plain.knownHostsKey.host == "10.0.0.5" && plain.knownHostsKey.port == 2222)
    }

    @Test func badAliases() {
        expectSingleError(
            head + "host_key_alias = \"a b\"\n", line: 5, key: "tunnels.gw.host_key_alias",
            contains: "not a valid host key alias")
        expectSingleError(
            head + "host_key_alias = \"*.corp\"\n", line: 5, key: "tunnels.gw.host_key_alias", contains: "wildcards")
        expectSingleError(
            head + "host_key_alias = \"\"\n", line: 5, key: "tunnels.gw.host_key_alias",
            contains: "not a valid host key alias")
        expectSingleError(
            "[defaults]\nhost_key_alias = \"x\"\n" + head, line: 2, key: "defaults.host_key_alias",
            contains: "cannot be set in [defaults]")
    }
}
