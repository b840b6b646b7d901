import Testing
@testable import EctoConfig

@Suite struct SSHConfigImporting {
    static let sshConfig = """
        Include conf.d/*

        Host gw
            HostName gw.example.net
            User ops
            Port 2222
            IdentityFile ~/.ssh/id_ed25519
            UserKnownHostsFile ~/.ssh/known_hosts
            LocalForward 18789 127.0.0.1:18789
            LocalForward localhost:9000 db.internal:5432
            ServerAliveInterval 30
            ServerAliveCountMax 4
            StrictHostKeyChecking accept-new
            ProxyJump bastion.example.net
            CertificateFile ~/.ssh/id_ed25519-cert.pub
            Compression yes

        Host loose
            HostName 10.1.2.3
            StrictHostKeyChecking no
            LocalForward *:8080 127.0.0.1:80
            ProxyCommand nc %h %p

        Host bare
            HostName bare.example.net
        """

    static var system: FakeSystem {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/config"] = sshConfig
        sys.files["/home/alice/.ssh/conf.d/10-extra"] = "Host gw\n  ConnectTimeout 7\n  ControlMaster auto\n"
        return sys
    }

    func importHost(
        _ alias: String, _ sys: FakeSystem = system, port: UInt16? = nil
    ) throws(ImportError) -> TunnelImport {
        try SSHConfigImport.importHost(alias, forwardLocalPort: port, environment: sys.environment)
    }

    @Test func mapsEverySupportedKeyword() throws {
        let imp = try importHost("gw")
        #expect(imp.name == "gw")
        #expect(imp.value(forKey: "target") == .string("ops@gw.example.net:2222"))
        // Both LocalForwards, in one tunnel.
        #expect(imp.value(forKey: "local") == nil && imp.value(forKey: "remote") == nil)
        #expect(
            imp.value(forKey: "forwards")
                == .strings(["127.0.0.1:18789:127.0.0.1:18789", "localhost:9000:db.internal:5432"]))
        #expect(imp.value(forKey: "identity_file") == .string("/home/alice/.ssh/id_ed25519"))
        #expect(imp.value(forKey: "certificate_file") == .string("/home/alice/.ssh/id_ed25519-cert.pub"))
        #expect(imp.value(forKey: "known_hosts") == .string("/home/alice/.ssh/known_hosts"))
        #expect(imp.value(forKey: "keepalive_interval") == .integer(30))
        #expect(imp.value(forKey: "keepalive_count_max") == .integer(4))
        #expect(imp.value(forKey: "connect_timeout") == .integer(7))
        #expect(imp.value(forKey: "host_key_policy") == .string("accept-new"))
        // Where each came from.
        let forwards = try #require(imp.keys.first { $0.key == "forwards" })
        #expect(forwards.origin == SettingLocation(file: "/home/alice/.ssh/config", line: 9))
        // Keys in documentation order.
        #expect(imp.keys.map(\.key) == ConfigLoader.tunnelKeys.filter { imp.value(forKey: $0) != nil })
    }

    @Test func listsWhatCannotBeCarriedOverWithFileAndLine() throws {
        let imp = try importHost("gw")
        let listed = imp.unsupported.map { "\($0.setting)@\($0.location.file):\($0.location.line)" }
        // Grouped by file, in the order the files were first read, then by line.
        #expect(
            listed == [
                "ControlMaster@/home/alice/.ssh/conf.d/10-extra:3"
            ])
        // ProxyJump is carried over (a tunnel that connected straight to the inner host was wrong).
        #expect(imp.value(forKey: "jump") == .strings(["bastion.example.net:22"]))
        // Compression is harmless for a tunnel: not listed.
        #expect(!listed.contains { $0.hasPrefix("Compression") })
    }

    @Test func picksAnotherForwardByLocalPort() throws {
        let imp = try importHost("gw", port: 9000)
        #expect(imp.value(forKey: "local") == .string("localhost:9000"))
        #expect(imp.value(forKey: "remote") == .string("db.internal:5432"))
        #expect(imp.value(forKey: "forwards") == nil)
        #expect(imp.notes.contains { $0.contains("LocalForward 18789 127.0.0.1:18789") && $0.contains("not imported") })
        #expect(throws: ImportError.self) { try importHost("gw", port: 1234) }
        do {
            _ = try importHost("gw", port: 1234)
        } catch {
            #expect(error.message.contains("18789, 9000"))
        }
    }

    @Test func refusesToWeakenHostKeyChecking() throws {
        let imp = try importHost("loose")
        #expect(imp.value(forKey: "host_key_policy") == nil)
        let strict = try #require(imp.unsupported.first { $0.setting == "StrictHostKeyChecking" })
        #expect(strict.location.line == 20)
        #expect(strict.reason.contains("never turns host key checking off"))
        #expect(!imp.unsupported.contains { $0.setting == "ProxyCommand" })
        #expect(imp.value(forKey: "proxy_command") == .string("nc %h %p"))
        // "*:8080" listens everywhere: allowed only with allow_non_loopback, and said so.
        #expect(imp.value(forKey: "local") == .string("0.0.0.0:8080"))
        #expect(imp.value(forKey: "allow_non_loopback") == .bool(true))
        #expect(imp.value(forKey: "target") == .string("alice@10.1.2.3:22"))
    }

    @Test func noForwardDefaultsToTheGatewayPort() throws {
        let imp = try importHost("bare")
        #expect(imp.value(forKey: "local") == .string("127.0.0.1:18789"))
        #expect(imp.value(forKey: "remote") == .string("127.0.0.1:18789"))
        #expect(imp.notes.contains { $0.contains("has no LocalForward") })
    }

    @Test func unknownAliasIsAnError() {
        #expect(throws: ImportError.self) { try importHost("nope") }
    }

    @Test(arguments: [
        ("8080 127.0.0.1:80", "127.0.0.1:8080", "127.0.0.1:80"),
        ("127.0.0.2:8080 host:80", "127.0.0.2:8080", "host:80"),
        ("[::1]:8080 [2001:db8::1]:80", "[::1]:8080", "[2001:db8::1]:80"),
        ("::1/8080 2001:db8::1/80", "[::1]:8080", "[2001:db8::1]:80"),
        (":8080 h:1", "0.0.0.0:8080", "h:1"),
    ])
    func localForwardSyntax(_ input: String, _ local: String, _ remote: String) throws {
        let (l, r) = try SSHConfigImport.parseLocalForward(input)
        #expect(l.description == local)
        #expect(r.description == remote)
    }

    @Test(arguments: ["8080", "/tmp/sock host:80", "8080 host", "99999 h:1"])
    func badLocalForwards(_ input: String) {
        #expect(throws: ImportError.self) { try SSHConfigImport.parseLocalForward(input) }
    }

    @Test func renderedTableParsesBackToTheSameTunnel() throws {
        var imp = try importHost("gw")
        imp.keys.removeAll { $0.key == "certificate_file" }  // no certificate in the fake home
        let text = imp.tableText(home: "/home/alice")
        #expect(text.hasPrefix("# imported from Host gw in ~/.ssh/config\n[tunnels.gw]\n"))
        #expect(text.contains("identity_file = \"~/.ssh/id_ed25519\"\n"))
        let config = try parseConfig(text, Self.system)
        let t = try #require(config.tunnels.first)
        #expect(t.target == SSHTarget(user: "ops", host: "gw.example.net", port: 2222))
        #expect(t.local == Endpoint(host: "127.0.0.1", port: 18789))
        #expect(t.forwards.count == 2 && t.forwards[1].remote == Endpoint(host: "db.internal", port: 5432))
        #expect(t.keepaliveInterval == .seconds(30))
        #expect(t.keepaliveCountMax == 4)
        #expect(t.connectTimeout == .seconds(7))
        #expect(t.hostKeyPolicy == .acceptNew)
        #expect(t.identityFile == "/home/alice/.ssh/id_ed25519")
    }

    static var paritySystem: FakeSystem {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/config"] = """
            Include ~/.ssh/hosts/*.conf
            Include extra

            Host *
                AddKeysToAgent yes
                UseKeychain yes
                IgnoreUnknown UseKeychain
                ServerAliveCountMax 5
            """
        sys.files["/home/alice/.ssh/hosts/office.conf"] = """
            Host office
                HostName office.example.net
                User ops
                IdentityFile ~/.ssh/id_office
                IdentityFile ~/.ssh/id_rsa
                IdentitiesOnly yes
                CertificateFile ~/.ssh/id_office-cert.pub
                HostKeyAlias office-gw
                UserKnownHostsFile ~/.ssh/known_hosts_office ~/.ssh/known_hosts
                LocalForward 18789 127.0.0.1:18789
                LocalForward 127.0.0.1:8080 localhost:80
                LocalForward [::1]:9000 [fe80::1]:22
                ServerAliveInterval 20
            """
        sys.files["/home/alice/.ssh/extra"] = """
            Host matchy
                HostName m.example.net
            Match host m.example.net
                User root
            Host remote
                HostName r.example.net
                RemoteForward 9000 localhost:9000
                PermitLocalCommand no
            Host cmd
                HostName c.example.net
                PermitLocalCommand yes
                LocalCommand echo hi
            Host odd
                HostName o.example.net
                FrobnicateWidgets yes
            """
        return sys
    }

    @Test func carriesEverythingOfAnOperatorsHostBlock() throws {
        let imp = try importHost("office", Self.paritySystem)
        #expect(imp.unsupported.isEmpty == false, "the Match block elsewhere in the files read is still refused")
        #expect(imp.unsupported.map(\.setting) == ["Match"])
        #expect(imp.value(forKey: "target") == .string("ops@office.example.net:22"))
        #expect(
            imp.value(forKey: "identity_file") == .strings(["/home/alice/.ssh/id_office", "/home/alice/.ssh/id_rsa"]))
        #expect(imp.value(forKey: "identities_only") == .bool(true))
        #expect(imp.value(forKey: "certificate_file") == .string("/home/alice/.ssh/id_office-cert.pub"))
        #expect(imp.value(forKey: "host_key_alias") == .string("office-gw"))
        #expect(imp.value(forKey: "known_hosts") == .string("/home/alice/.ssh/known_hosts_office"))
        #expect(
            imp.notes.contains {
                $0.contains("lists 2 files: only the first is read") && $0.contains("~/.ssh/known_hosts")
            })
        #expect(
            imp.value(forKey: "forwards")
                == .strings([
                    "127.0.0.1:18789:127.0.0.1:18789", "127.0.0.1:8080:localhost:80", "[::1]:9000:[fe80::1]:22",
                ]))
        #expect(imp.value(forKey: "keepalive_interval") == .integer(20))
        #expect(imp.value(forKey: "keepalive_count_max") == .integer(5))
        let text = imp.tableText(home: "/home/alice")
        #expect(text.contains("identity_file = [\"~/.ssh/id_office\", \"~/.ssh/id_rsa\"]\n"))
        #expect(
            text.contains(
                "forwards = [\"127.0.0.1:18789:127.0.0.1:18789\", \"127.0.0.1:8080:localhost:80\", \"[::1]:9000:[fe80::1]:22\"]\n"
            ))
    }

    @Test func refusesWhatChangesTheConnection() throws {
        let sys = Self.paritySystem
        let match = try importHost("matchy", sys).unsupported
        #expect(match.map { "\($0.setting)@\($0.location.line)" } == ["Match@3"])
        #expect(match[0].reason.contains("Match blocks are not evaluated"))
        let remote = try importHost("remote", sys).unsupported.filter { $0.setting != "Match" }
        #expect(
            remote.map { "\($0.setting)@\($0.location.line)" } == ["RemoteForward@7"],
            "PermitLocalCommand no is harmless")
        let cmd = try importHost("cmd", sys).unsupported.filter { $0.setting != "Match" }
        #expect(cmd.map { "\($0.setting)@\($0.location.line)" } == ["PermitLocalCommand@11", "LocalCommand@12"])
        let odd = try importHost("odd", sys).unsupported.filter { $0.setting != "Match" }
        #expect(odd.map(\.setting) == ["FrobnicateWidgets"] && odd[0].reason.contains("not known"))
        #expect(odd[0].location.file == "/home/alice/.ssh/extra")
    }

    @Test func sshHostReadsEveryIdentityFileAndTheAlias() throws {
        var sys = Self.paritySystem
        sys.files["/home/alice/.ssh/id_office"] = "KEY"
        sys.files["/home/alice/.ssh/id_rsa"] = "KEY"
        sys.files["/home/alice/.ssh/known_hosts_office"] = "office-gw ssh-ed25519 AAAA\n"
        var env = sys.environment
        env.judgeKeyFiles = false
        let config = try ConfigLoader.parse(
            text: "[tunnels.o]\nssh_host = \"office\"\nlocal = \"127.0.0.1:1\"\nremote = \"h:1\"\n", path: configPath,
            environment: env)
        let t = try #require(config.tunnels.first)
        #expect(t.identityFiles == ["/home/alice/.ssh/id_office", "/home/alice/.ssh/id_rsa"])
        #expect(t.identitiesOnly)
        #expect(t.hostKeyAlias == "office-gw")
        #expect(t.knownHostsKey.host == "office-gw" && t.knownHostsKey.port == 22)
        #expect(t.certificateFile == nil)
        #expect(
            config.warnings.contains {
                $0.message.contains("CertificateFile \"/home/alice/.ssh/id_office-cert.pub\"")
                    && $0.message.contains("ignored")
            })
    }

    @Test func sanitizedNames() {
        #expect(TunnelImport.sanitizedName("gw.example.net") == "gw-example-net")
        #expect(TunnelImport.sanitizedName("..") == "tunnel")
        #expect(TunnelImport.sanitizedName("a_b-c") == "a_b-c")
    }
}

@Suite struct OpenClawImporting {
    static let openclawJSON = """
        // ~/.openclaw/openclaw.json
        {
          gateway: {
            mode: "remote",
            port: 18789,
            auth: { token: "local-secret" },
            remote: {
              url: "ws://127.0.0.1:28789",
              transport: "ssh",
              sshTarget: "ops@gw.example.net:2222",
              sshIdentity: "~/.ssh/id_ed25519",
              remotePort: 18790,
              token: "${GW_TOKEN}",
              password: { source: "env", provider: "default", id: "GW_PASSWORD" },
            },
          },
        }
        """

    func settings(_ text: String = openclawJSON) throws(ImportError) -> OpenClawGatewaySettings {
        try OpenClawImport.parseSettings(text: text, path: "/home/alice/.openclaw/openclaw.json")
    }

    @Test func readsTheGatewayKeysWithLines() throws {
        let s = try settings()
        #expect(s.sshTarget?.value == "ops@gw.example.net:2222")
        #expect(s.sshTarget?.location.line == 10)
        #expect(s.remotePort?.value == 18790)
        #expect(s.remoteToken?.value == .environment("GW_TOKEN"))
        #expect(s.remotePassword?.value == .environment("GW_PASSWORD"))
        #expect(s.authToken?.value == .literal("local-secret"))
    }

    @Test func makesTheTunnel() throws {
        let imp = try OpenClawImport.makeImport(try settings(), home: "/home/alice")
        #expect(imp.name == "openclaw")
        #expect(imp.value(forKey: "target") == .string("ops@gw.example.net:2222"))
        #expect(imp.value(forKey: "local") == .string("127.0.0.1:28789"))
        #expect(imp.value(forKey: "remote") == .string("127.0.0.1:18790"))
        #expect(imp.value(forKey: "identity_file") == .string("/home/alice/.ssh/id_ed25519"))
        #expect(imp.unsupported.isEmpty)
        // No secret ends up in the table.
        #expect(!imp.tableText().contains("secret"))
        #expect(!imp.tableText().contains("GW_TOKEN"))
        let config = try parseConfig(imp.tableText(home: "/home/alice"))
        #expect(config.tunnels.first?.remote == Endpoint(host: "127.0.0.1", port: 18790))
    }

    @Test func defaultsWithoutURLOrRemotePort() throws {
        let s = try settings(#"{gateway: {mode: "remote", remote: {sshTarget: "gw.example.net"}}}"#)
        let imp = try OpenClawImport.makeImport(s)
        #expect(imp.value(forKey: "local") == .string("127.0.0.1:18789"))
        #expect(imp.value(forKey: "remote") == .string("127.0.0.1:18789"))
        #expect(imp.value(forKey: "target") == .string("gw.example.net:22"))
    }

    @Test func missingTargetAndBadValuesAreErrors() throws {
        let s = try settings(#"{gateway: {remote: {url: "ws://127.0.0.1:18789"}}}"#)
        #expect(throws: ImportError.self) { try OpenClawImport.makeImport(s) }
        // An explicit target (connect USER@HOST) works without sshTarget.
        #expect(
            try OpenClawImport.makeImport(s, sshTarget: "ops@h.example").value(forKey: "target")
                == .string("ops@h.example:22"))
        do {
            _ = try settings("{gateway: {remote: {remotePort: 'x'}}}")
            Issue.record("accepted a bad port")
        } catch {
            #expect(error.location?.line == 1)
            #expect(error.message.contains("gateway.remote.remotePort"))
        }
        do {
            _ = try settings("{\n gateway: {\n  remote: { sshTarget: ops@gw }\n }\n}")
            Issue.record("accepted bad JSON5")
        } catch {
            #expect(
                error.description
                    == "/home/alice/.openclaw/openclaw.json:3: 24: unexpected \"@\": expected \",\" or \"}\" after the value of \"sshTarget\""
                    || error.location?.line == 3, "\(error)")
        }
    }

    @Test func directTransportAndRemoteURLAreListed() throws {
        let s = try settings(
            #"{gateway: {remote: {sshTarget: "gw.example.net", transport: "direct", url: "wss://gw.example.net", sshHostKeyPolicy: "openssh"}}}"#
        )
        let imp = try OpenClawImport.makeImport(s)
        #expect(
            Set(imp.unsupported.map(\.setting)) == [
                "gateway.remote.transport", "gateway.remote.url", "gateway.remote.sshHostKeyPolicy",
            ])
        #expect(imp.value(forKey: "local") == .string("127.0.0.1:18789"))
    }

    @Test func configPathFollowsOpenClawsVariables() {
        func path(_ vars: [String: String]) -> String {
            var sys = FakeSystem()
            sys.variables = vars
            return OpenClawImport.defaultPath(environment: sys.environment)
        }
        #expect(path([:]) == "/home/alice/.openclaw/openclaw.json")
        #expect(path(["OPENCLAW_STATE_DIR": "~/state"]) == "/home/alice/state/openclaw.json")
        #expect(path(["OPENCLAW_CONFIG_PATH": "/etc/oc.json", "OPENCLAW_STATE_DIR": "/x"]) == "/etc/oc.json")
        #expect(path(["OPENCLAW_HOME": "/srv/oc"]) == "/srv/oc/.openclaw/openclaw.json")
    }

    @Test func readSettingsReportsAMissingFile() {
        #expect(throws: ImportError.self) { try OpenClawImport.readSettings(environment: FakeSystem().environment) }
    }
}

@Suite struct GatewayCredentialPrecedence {
    static let loc = SettingLocation(file: "/oc.json", line: 3)

    static func settings(
        remoteToken: OpenClawSecret? = nil, authToken: OpenClawSecret? = nil,
        remotePassword: OpenClawSecret? = nil, authPassword: OpenClawSecret? = nil
    ) -> OpenClawGatewaySettings {
        var s = OpenClawGatewaySettings(path: "/oc.json")
        s.remoteToken = remoteToken.map { .init($0, at: loc) }
        s.authToken = authToken.map { .init($0, at: SettingLocation(file: "/oc.json", line: 9)) }
        s.remotePassword = remotePassword.map { .init($0, at: loc) }
        s.authPassword = authPassword.map { .init($0, at: SettingLocation(file: "/oc.json", line: 9)) }
        return s
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var explicit: String?
        var settings: OpenClawGatewaySettings?
        var env: [String: String]
        var value: String?
        var source: CredentialSource?
        var testDescription: String { name }
    }

    static let tokenCases: [Case] = [
        Case(
            name: "explicit wins over all", explicit: "cli",
            settings: settings(remoteToken: .literal("r"), authToken: .literal("a")),
            env: ["OPENCLAW_GATEWAY_TOKEN": "e"], value: "cli", source: .commandLine(option: "--token")),
        Case(
            name: "remote token before env", explicit: nil,
            settings: settings(remoteToken: .literal("r"), authToken: .literal("a")),
            env: ["OPENCLAW_GATEWAY_TOKEN": "e"], value: "r",
            source: .openClawConfig(key: "gateway.remote.token", location: loc, viaVariable: nil)),
        Case(
            name: "env before auth token", explicit: nil, settings: settings(authToken: .literal("a")),
            env: ["OPENCLAW_GATEWAY_TOKEN": "e"], value: "e", source: .environment(variable: "OPENCLAW_GATEWAY_TOKEN")),
        Case(
            name: "auth token last", explicit: nil, settings: settings(authToken: .literal("a")), env: [:], value: "a",
            source: .openClawConfig(
                key: "gateway.auth.token", location: SettingLocation(file: "/oc.json", line: 9), viaVariable: nil)),
        Case(
            name: "empty explicit and env count as unset", explicit: "", settings: settings(authToken: .literal("a")),
            env: ["OPENCLAW_GATEWAY_TOKEN": ""], value: "a",
            source: .openClawConfig(
                key: "gateway.auth.token", location: SettingLocation(file: "/oc.json", line: 9), viaVariable: nil)),
        Case(
            name: "remote token through ${VAR}", explicit: nil, settings: settings(remoteToken: .environment("MY_TOK")),
            env: ["MY_TOK": "v", "OPENCLAW_GATEWAY_TOKEN": "e"], value: "v",
            source: .openClawConfig(key: "gateway.remote.token", location: loc, viaVariable: "MY_TOK")),
        Case(
            name: "unset ${VAR} falls through to env", explicit: nil,
            settings: settings(remoteToken: .environment("MY_TOK")),
            env: ["OPENCLAW_GATEWAY_TOKEN": "e"], value: "e", source: .environment(variable: "OPENCLAW_GATEWAY_TOKEN")),
        Case(name: "nothing at all", explicit: nil, settings: nil, env: [:], value: nil, source: nil),
        Case(
            name: "password env does not give a token", explicit: nil, settings: nil,
            env: ["OPENCLAW_GATEWAY_PASSWORD": "p"],
            value: nil, source: nil),
    ]

    @Test(arguments: tokenCases)
    func token(_ c: Case) {
        let r = GatewayCredentials.resolve(explicitToken: c.explicit, settings: c.settings, environment: c.env)
        #expect(r.token?.value == c.value)
        #expect(r.token?.source == c.source)
    }

    static let passwordCases: [Case] = [
        Case(
            name: "explicit wins", explicit: "cli", settings: settings(remotePassword: .literal("r")),
            env: ["OPENCLAW_GATEWAY_PASSWORD": "e"], value: "cli", source: .commandLine(option: "--password")),
        // Note the order differs from the token's: the environment comes before gateway.remote.password.
        Case(
            name: "env before remote password", explicit: nil,
            settings: settings(remotePassword: .literal("r"), authPassword: .literal("a")),
            env: ["OPENCLAW_GATEWAY_PASSWORD": "e"], value: "e",
            source: .environment(variable: "OPENCLAW_GATEWAY_PASSWORD")),
        Case(
            name: "remote password before auth password", explicit: nil,
            settings: settings(remotePassword: .literal("r"), authPassword: .literal("a")), env: [:], value: "r",
            source: .openClawConfig(key: "gateway.remote.password", location: loc, viaVariable: nil)),
        Case(
            name: "auth password last", explicit: nil, settings: settings(authPassword: .literal("a")), env: [:],
            value: "a",
            source: .openClawConfig(
                key: "gateway.auth.password", location: SettingLocation(file: "/oc.json", line: 9), viaVariable: nil)),
        Case(
            name: "token env does not give a password", explicit: nil, settings: nil,
            env: ["OPENCLAW_GATEWAY_TOKEN": "t"],
            value: nil, source: nil),
    ]

    @Test(arguments: passwordCases)
    func password(_ c: Case) {
        let r = GatewayCredentials.resolve(explicitPassword: c.explicit, settings: c.settings, environment: c.env)
        #expect(r.password?.value == c.value)
        #expect(r.password?.source == c.source)
    }

    @Test func descriptionNeverShowsTheSecret() {
        let r = GatewayCredentials.resolve(
            settings: Self.settings(remoteToken: .literal("s3cr3t-token-value")),
            environment: ["OPENCLAW_GATEWAY_PASSWORD": "hunter2"])
        #expect(!r.description.contains("s3cr3t"))
        #expect(!r.description.contains("hunter2"))
        #expect(!"\(r.token!)".contains("s3cr3t"))
        #expect(r.description.contains("token: <redacted, 18 characters> from gateway.remote.token (/oc.json:3)"))
        #expect(r.description.contains("password: <redacted, 7 characters> from $OPENCLAW_GATEWAY_PASSWORD"))
        #expect(r.describe(reveal: true).contains("s3cr3t-token-value"))
    }

    @Test func unresolvableReferencesAreReported() {
        let r = GatewayCredentials.resolve(
            settings: Self.settings(remoteToken: .unsupportedReference("file"), authToken: .environment("NOPE")),
            environment: [:])
        #expect(r.token == nil)
        #expect(r.skipped.count == 2)
        #expect(r.skipped[0].contains("source \"file\""))
        #expect(r.skipped[1].contains("$NOPE, which is not set"))
    }

    @Test func proxyJumpHopsGetTheirHostBlocksAndTheFirstOfJumpOrCommandWins() throws {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/config"] = """
            Host inner
                HostName 10.9.0.5
                ProxyJump ops@edge:2200, relay
                ProxyCommand nc %h %p

            Host relay
                HostName relay.example.net
                User jump
                Port 2201

            Host edge
                HostName edge.example.net

            Host direct
                HostName direct.example.net
                ProxyJump none
            """
        let imp = try SSHConfigImport.importHost("inner", environment: sys.environment)
        #expect(imp.value(forKey: "jump") == .strings(["ops@edge.example.net:2200", "jump@relay.example.net:2201"]))
        #expect(imp.value(forKey: "proxy_command") == nil)
        #expect(imp.unsupported.isEmpty)
        let direct = try SSHConfigImport.importHost("direct", environment: sys.environment)
        #expect(direct.value(forKey: "jump") == nil && direct.value(forKey: "proxy_command") == nil)
        // The written table loads, and a tunnel naming the alias (ssh_host) gets the same hops.
        let text = """
            [tunnels.byalias]
            ssh_host = "inner"
            local = "127.0.0.1:18789"
            remote = "127.0.0.1:18789"
            """
        let config = try parseConfig(text, sys)
        #expect(
            config.tunnels[0].jump.map(\.description) == ["ops@edge.example.net:2200", "jump@relay.example.net:2201"])
        #expect(config.tunnels[0].target.host == "10.9.0.5")
        // ~/.ssh/config comes before [defaults]; the tunnel's own key before both.
        let withDefaults = try parseConfig("[defaults]\njump = [\"bastion.example.net\"]\n\n" + text, sys)
        #expect(withDefaults.tunnels[0].jump.map(\.host) == ["edge.example.net", "relay.example.net"])
        let own = try parseConfig(text + "\njump = []\n", sys)
        #expect(own.tunnels[0].jump.isEmpty)
        let turnedOff = try parseConfig(
            "[defaults]\njump = [\"bastion.example.net\"]\n\n"
                + text.replacingOccurrences(of: "\"inner\"", with: "\"direct\""), sys)
        #expect(turnedOff.tunnels[0].jump.isEmpty, "ProxyJump none beats [defaults]")
        let plain = try parseConfig(
            "[defaults]\njump = [\"bastion.example.net\"]\n\n"
                + text.replacingOccurrences(of: "\"inner\"", with: "\"edge\""), sys)
        #expect(plain.tunnels[0].jump.map { $0.host } == ["bastion.example.net"], "no ProxyJump: [defaults] applies")
    }
}
