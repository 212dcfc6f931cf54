// A client as Weaviate's modules call a vectorizer: Go's net/http with the default transport, a
// client timeout (MODULES_CLIENT_TIMEOUT), no Content-Type. Prints the status and the body, or
// "error: ..." and exits 2.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	url := flag.String("url", "", "where to POST")
	bodyFile := flag.String("body", "", "file holding the request body")
	timeout := flag.Duration("timeout", 50*time.Second, "http.Client timeout")
	flag.Parse()
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	request, err := http.NewRequest(http.MethodPost, *url, bytes.NewReader(body))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	client := &http.Client{Timeout: *timeout}
	response, err := client.Do(request)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	defer response.Body.Close()
	answer, err := io.ReadAll(response.Body)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	fmt.Printf("%d %s\n", response.StatusCode, answer)
}
