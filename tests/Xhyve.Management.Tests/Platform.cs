// The store and the engine host are Linux-only (for now); so are their tests.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
