// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// Everything in npipe's public API.

#include <npipe/connection.hpp>
#include <npipe/error.hpp>
#include <npipe/options.hpp>
#include <npipe/pipe_name.hpp>
#include <npipe/server.hpp>
#include <npipe/local_path.hpp>
#include <npipe/version.hpp>
