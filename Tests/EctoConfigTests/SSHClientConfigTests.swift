import Testing
@testable import EctoConfig

@Suite struct SSHClientConfigReading {
    static let mainConfig = """
        # global settings before any Host apply to every host
        ConnectTimeout 5
        Include config.d/*
        Include ~/.ssh/extra.conf

        Host gw gateway
            HostName gw.example.net
            User ops
            Port 2222
            IdentityFile ~/.ssh/id_gw
            IdentityFile ~/.ssh/id_second

        Host *.corp !bastion.corp
            User corpuser

        Match host foo
            HostName should.not.apply

        Host db?
            HOSTNAME=%h.internal
            identityfile "%d/.ssh/keys/%h_%u_%r"

        Host inc-*
            Include conditional.conf

        Host *
            User fallback
            UserKnownHostsFile ~/.ssh/kh_all /other/kh
            HostName %h.default.example
        """

    static var system: FakeSystem {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/config"] = mainConfig
        sys.files["/home/alice/.ssh/config.d/10-web"] = "Host web\n  HostName 10.0.0.5\n  Port 2200\n"
        sys.files["/home/alice/.ssh/config.d/20-web"] = "Host web\n  HostName 10.9.9.9\n  User webadmin\n"
        sys.files["/home/alice/.ssh/config.d/.hidden"] = "Host web\n  User hidden\n"
        sys.files["/home/alice/.ssh/extra.conf"] = "Host extra\n  HostName extra.example.net\n"
        sys.files["/home/alice/.ssh/conditional.conf"] = "User from-conditional\nHost inc-b\n  Port 2022\n"
        return sys
    }

    func resolve(_ host: String, _ sys: FakeSystem = system) -> SSHHostSettings {
        SSHClientConfig.resolve(host: host, environment: sys.environment)
    }

    @Test func exactHost() {
        let s = resolve("gateway")
        #expect(s.hostName?.value == "gw.example.net")
        #expect(s.hostName?.line == 7)
        #expect(s.hostName?.file == "/home/alice/.ssh/config")
        #expect(s.user?.value == "ops")
        #expect(s.port?.value == "2222")
        // Every IdentityFile, in order (ssh accumulates them).
        #expect(s.identityFile?.value == "/home/alice/.ssh/id_gw")
        #expect(s.identityFiles.map(\.value) == ["/home/alice/.ssh/id_gw", "/home/alice/.ssh/id_second"])
        #expect(s.userKnownHostsFiles.map(\.value) == ["/home/alice/.ssh/kh_all", "/other/kh"])
        #expect(s.userKnownHostsFile?.value == "/home/alice/.ssh/kh_all")
        #expect(s.skippedMatchBlocks.map(\.line) == [16])
        #expect(s.skippedMatchBlocks.first?.value == "host foo")
    }

    @Test func wildcardsAndNegation() {
        #expect(resolve("app.corp").user?.value == "corpuser")
        // Negated pattern: the block does not apply, the later Host * does.
        #expect(resolve("bastion.corp").user?.value == "fallback")
        #expect(resolve("APP.CORP").user?.value == "corpuser")
    }

    @Test func questionMarkAndTokens() {
        let s = resolve("db1")
        #expect(s.hostName?.value == "db1.internal")
        #expect(s.user?.value == "fallback")
        #expect(s.identityFile?.value == "/home/alice/.ssh/keys/db1.internal_alice_fallback")
        // "db12" has two characters after "db".
        #expect(resolve("db12").hostName?.value == "db12.default.example")
    }

    @Test func matchBlockIsSkipped() {
        let s = resolve("foo")
        #expect(s.hostName?.value == "foo.default.example")
        #expect(s.skippedMatchBlocks.count == 1)
    }

    @Test func includeGlobSortedAndFirstWins() {
        let s = resolve("web")
        #expect(s.hostName?.value == "10.0.0.5")
        #expect(s.hostName?.file == "/home/alice/.ssh/config.d/10-web")
        #expect(s.port?.value == "2200")
        // Not from the hidden file; 20-web comes after 10-web and gives the first User.
        #expect(s.user?.value == "webadmin")
        #expect(s.filesRead.contains("/home/alice/.ssh/config.d/.hidden") == false)
        #expect(resolve("extra").hostName?.value == "extra.example.net")
    }

    @Test func conditionalInclude() {
        // Included from a matching Host block: lines before its first Host apply.
        let b = resolve("inc-b")
        #expect(b.user?.value == "from-conditional")
        #expect(b.port?.value == "2022")
        let a = resolve("inc-a")
        #expect(a.user?.value == "from-conditional")
        #expect(a.port == nil)
        // Not included at all for other hosts.
        #expect(resolve("web").filesRead.contains("/home/alice/.ssh/conditional.conf") == false)
    }

    @Test func includeLoopIsBounded() {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/config"] = "Include config\nHost x\n  HostName x.example\n"
        let s = SSHClientConfig.resolve(host: "x", environment: sys.environment)
        #expect(s.hostName?.value == "x.example")
        #expect(s.filesRead.count == SSHClientConfig.maxIncludeDepth + 1)
        #expect(s.problems.count == 1)
        #expect(s.problems.first?.value.contains("more than 16 levels") == true)
    }

    @Test func keyEqualsValueAndQuotes() {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/config"] = """
            Host=q
              HostName = "q.example.net"
              User="quoted user"
              IdentityFile='keys/q key'   # comment
            """
        let s = SSHClientConfig.resolve(host: "q", environment: sys.environment)
        #expect(s.hostName?.value == "q.example.net")
        #expect(s.user?.value == "quoted user")
        // Relative to the home directory.
        #expect(s.identityFile?.value == "/home/alice/keys/q key")
    }

    @Test func noneMeansNoFile() {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/config"] =
            "Host n\n  IdentityFile none\n  UserKnownHostsFile NONE\nHost *\n  IdentityFile ~/.ssh/id_x\n"
        let s = SSHClientConfig.resolve(host: "n", environment: sys.environment)
        #expect(s.identityFile == nil)
        #expect(s.userKnownHostsFile == nil)
        #expect(
            SSHClientConfig.resolve(host: "m", environment: sys.environment).identityFile?.value
                == "/home/alice/.ssh/id_x")
    }

    @Test func missingConfigGivesNothing() {
        let s = SSHClientConfig.resolve(host: "x", environment: FakeSystem().environment)
        #expect(s == SSHHostSettings())
    }

    @Test func tokenizer() throws {
        #expect(try SSHClientConfig.tokenize("  # comment") == nil)
        #expect(try SSHClientConfig.tokenize("") == nil)
        let t = try #require(try SSHClientConfig.tokenize("\tHost a \"b c\" !d # trailing"))
        #expect(t.keyword == "host")
        #expect(t.args == ["a", "b c", "!d"])
        #expect(throws: SSHClientConfig.TokenizeError.self) { try SSHClientConfig.tokenize("User \"open") }
    }

    @Test func globMatching() {
        #expect(SSHClientConfig.globMatch("*.example.*", "a.example.org", caseInsensitive: false))
        #expect(SSHClientConfig.globMatch("a?c", "abc", caseInsensitive: false))
        #expect(!SSHClientConfig.globMatch("a?c", "abbc", caseInsensitive: false))
        #expect(SSHClientConfig.globMatch("*", "", caseInsensitive: false))
        #expect(!SSHClientConfig.globMatch("ABC", "abc", caseInsensitive: false))
        #expect(SSHClientConfig.globMatch("ABC", "abc", caseInsensitive: true))
        #expect(SSHClientConfig.hostMatches("x", patterns: ["y", "x"]))
        #expect(!SSHClientConfig.hostMatches("x", patterns: ["*", "!x"]))
        #expect(!SSHClientConfig.hostMatches("x", patterns: ["!y"]))
    }
}

@Suite struct SSHHostInConfig {
    var system: FakeSystem {
        var sys = SSHClientConfigReading.system
        sys.files["/home/alice/.ssh/id_gw"] = "K"
        sys.files["/home/alice/.ssh/kh_all"] = "gw ..."
        return sys
    }

    func tunnel(_ extra: String) -> String {
        "[tunnels.t]\nlocal = \"127.0.0.1:1\"\nremote = \"127.0.0.1:2\"\n\(extra)\n"
    }

    @Test func valuesFromSSHConfig() throws {
        let config = try parseConfig(tunnel("ssh_host = \"gw\""), system)
        let t = config.tunnels[0]
        #expect(t.sshHostAlias == "gw")
        #expect(t.target == SSHTarget(user: "ops", host: "gw.example.net", port: 2222))
        #expect(t.identityFile == "/home/alice/.ssh/id_gw")
        #expect(t.knownHosts == "/home/alice/.ssh/kh_all")
        // The second IdentityFile does not exist: skipped as ssh does, and said.
        #expect(config.warnings.count == 2)
        #expect(
            config.warnings.contains {
                $0.message.contains(
                    "IdentityFile \"/home/alice/.ssh/id_second\" at ~/.ssh/config:11 is not a regular file; ignored")
            }, "\(config.warnings)")
        // The skipped Match block is remembered.
        let match = try #require(config.warnings.first { $0.message.contains("Match block skipped") })
        #expect(match.file == "/home/alice/.ssh/config")
        #expect(match.line == 16)
    }

    @Test func everyExistingIdentityFileIsOffered() throws {
        var sys = system
        sys.files["/home/alice/.ssh/id_second"] = "K"
        let t = try parseConfig(tunnel("ssh_host = \"gw\""), sys).tunnels[0]
        #expect(t.identityFiles == ["/home/alice/.ssh/id_gw", "/home/alice/.ssh/id_second"])
    }

    @Test func tunnelKeysWin() throws {
        var sys = system
        sys.files["/k"] = "K"
        let text = tunnel(
            "ssh_host = \"gw\"\nuser = \"me\"\nidentity_file = \"/k\"\nknown_hosts = \"~/.ssh/known_hosts\"")
        let t = try parseConfig(text, sys).tunnels[0]
        #expect(t.target == SSHTarget(user: "me", host: "gw.example.net", port: 2222))
        #expect(t.identityFile == "/k")
        #expect(t.knownHosts == "/home/alice/.ssh/known_hosts")
    }

    @Test func sshConfigBeatsDefaults() throws {
        var sys = system
        sys.files["/k"] = "K"
        let text = "[defaults]\nuser = \"dflt\"\nidentity_file = \"/k\"\n" + tunnel("ssh_host = \"gw\"")
        let t = try parseConfig(text, sys).tunnels[0]
        #expect(t.target.user == "ops")
        #expect(t.identityFile == "/home/alice/.ssh/id_gw")
        // An alias whose blocks give no user: [defaults] applies.
        sys.files["/home/alice/.ssh/config"] = "Host nouser\n  HostName nouser.example\n"
        let t2 = try parseConfig("[defaults]\nuser = \"dflt\"\n" + tunnel("ssh_host = \"nouser\""), sys).tunnels[0]
        #expect(t2.target.user == "dflt")
    }

    @Test func missingIdentityFromSSHConfigIsIgnoredWithWarning() throws {
        var sys = system
        sys.files["/home/alice/.ssh/id_gw"] = nil
        let config = try parseConfig(tunnel("ssh_host = \"gw\""), sys)
        #expect(config.tunnels[0].identityFile == nil)
        #expect(config.warnings.contains { $0.key == "tunnels.t.identity_file" && $0.message.contains("IdentityFile") })
    }

    @Test func knownHostsFromSSHConfigMustExist() {
        var sys = system
        sys.files["/home/alice/.ssh/kh_all"] = nil
        expectSingleError(
            tunnel("ssh_host = \"gw\""), sys, line: 4, key: "tunnels.t.known_hosts",
            contains: "(from UserKnownHostsFile at ~/.ssh/config:28)")
    }

    @Test func aliasWithoutHostName() throws {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/config"] = "Host known\n  User bob\n"
        expectSingleError(
            tunnel("ssh_host = \"nosuch\""), sys, line: 4, key: "tunnels.t.ssh_host",
            contains: "\"nosuch\" has no HostName in ~/.ssh/config and is not a resolvable host name")
        expectSingleError(
            tunnel("ssh_host = \"known\""), sys, line: 4, key: "tunnels.t.ssh_host", contains: "no HostName")
        // A name that resolves is used as the host.
        sys.resolvable = ["known"]
        let t = try parseConfig(tunnel("ssh_host = \"known\""), sys).tunnels[0]
        #expect(t.target == SSHTarget(user: "bob", host: "known", port: 22))
        // Dotted names and IP literals are used as they are.
        let t2 = try parseConfig(tunnel("ssh_host = \"gw2.example.net\""), sys).tunnels[0]
        #expect(t2.target == SSHTarget(user: "alice", host: "gw2.example.net", port: 22))
        let t3 = try parseConfig(tunnel("ssh_host = \"10.0.0.7\""), sys).tunnels[0]
        #expect(t3.target.host == "10.0.0.7")
    }

    @Test func badPortInSSHConfig() {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/config"] = "Host p\n  HostName p.example\n  Port ssh\n"
        expectSingleError(
            tunnel("ssh_host = \"p\""), sys, line: 4, key: "tunnels.t.ssh_host",
            contains: "Port \"ssh\" at ~/.ssh/config:3 is not valid")
    }

    @Test func badHostNameInSSHConfig() {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/config"] = "Host p\n  HostName bad_host!\n"
        expectSingleError(
            tunnel("ssh_host = \"p\""), sys, line: 4, key: "tunnels.t.ssh_host",
            contains: "HostName \"bad_host!\" at ~/.ssh/config:2 is not a valid host")
    }
}
