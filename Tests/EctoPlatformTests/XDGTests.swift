import EctoPlatform
import Testing

/// One rule for every XDG lookup: only an absolute value counts.
@Suite struct XDGTests {
    @Test func absoluteValuesCountRelativeAndEmptyOnesFallBack() {
        let home = "/home/me"
        #expect(XDG.configHome(["XDG_CONFIG_HOME": "/x/conf/"], home: home) == "/x/conf")
        #expect(XDG.configHome(["XDG_CONFIG_HOME": "conf"], home: home) == "/home/me/.config")
        #expect(XDG.configHome(["XDG_CONFIG_HOME": ""], home: home) == "/home/me/.config")
        #expect(XDG.configHome([:], home: "/") == "/.config")
        #expect(XDG.stateHome(["XDG_STATE_HOME": "/s"], home: home) == "/s")
        #expect(XDG.stateHome(["XDG_STATE_HOME": "relative/state"], home: home) == "/home/me/.local/state")
        #expect(XDG.runtimeDirectory(["XDG_RUNTIME_DIR": "/run/user/1000"]) == "/run/user/1000")
        #expect(XDG.runtimeDirectory(["XDG_RUNTIME_DIR": "run"]) == nil)
        #expect(XDG.runtimeDirectory([:]) == nil)
    }
}
