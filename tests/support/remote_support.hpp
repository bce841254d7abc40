// SPDX-License-Identifier: MIT
#pragma once
// Remote-pipe test helpers (Linux): the test certificates (made once per
// CTest run by the fixture test_certs.make, or once per test process when
// run by hand) and the TLS settings built from them.

#include <npipe/npipe.hpp>
#include <npipe/remote.hpp>

#include <string>

namespace npipe::test {

/// Where tests/support/make_test_certs.sh put the certificates:
/// $NPIPE_TEST_CERT_DIR when set (CTest sets it for every test that uses
/// them), else a directory made for this process on first use and removed
/// at exit.
const std::string& cert_dir();
/// cert_dir() + "/" + file.
std::string cert(const std::string& file);

/// A client with the CA and a client certificate.
tls_options client_certs();
/// A client with the pre-shared key of psk.txt.
tls_options client_psk();
/// A gateway that accepts client certificates signed by the CA, or the PSK.
tls_options gateway_certs_and_psk();

/// A TCP port on 127.0.0.1 that was free a moment ago (for servers forked
/// before they can report the port they got).
std::uint16_t free_tcp_port();

/// A gateway for tests: 127.0.0.1, a free port, every pipe exported.
gateway_options loopback_gateway(const tls_options& tls);

/// `\\HOST:PORT\pipe\NAME` for a local pipe name served through a gateway.
pipe_name remote_name(const std::string& host, std::uint16_t port, const pipe_name& local);

} // namespace npipe::test
