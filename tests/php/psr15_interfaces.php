<?php

declare(strict_types=1);

// PSR-15's two interfaces, verbatim in shape, for the test harness only: Debian packages
// PSR-7 and PSR-17 but not PSR-15, and Packagist is out of reach here. An application
// using the middleware gets the real ones from psr/http-server-handler / -middleware.

namespace Psr\Http\Server;

use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;

if (!interface_exists(RequestHandlerInterface::class)) {
    interface RequestHandlerInterface
    {
        public function handle(ServerRequestInterface $request): ResponseInterface;
    }
}

if (!interface_exists(MiddlewareInterface::class)) {
    interface MiddlewareInterface
    {
        public function process(ServerRequestInterface $request, RequestHandlerInterface $handler): ResponseInterface;
    }
}
